"""Resampling the test set: stratified by class, by patient group when there are groups, and seeded, so
every row of a dataset is scored on the same resamples and comparisons between rows are paired.

A resample is returned as case weights (how often each test case was drawn): `weighted.py` scores a
whole (B, n) weight matrix at once. Every class is in every resample, so class-conditional metrics
(sensitivity, AUROC, macro-F1) are defined in all of them: images are stratified by class; with groups
(patients, studies, sites) whole groups are drawn, since slices of one patient are not independent,
stratified by majority class as far as that leaves every group free to vary (all but a class's only
group, which gets no interval), a resample lacking a class drawn again.

Each block (a class's images, a stratum's groups) of n units draws n - 1 of them, each draw weighing
n / (n - 1): Rao and Wu's rescaled bootstrap (1988), the survey statistician's standard for few units
per stratum. Drawing n of n gives a stratified mean a variance (n - 1) / n of the textbook one, too
narrow where a class has 3-10 patients (the README's simulated coverage); n - 1 draws give it exactly
(ratios, AUROC and the redraws that keep every class present approximately), and a block's weight still
sums to n.
"""

import numpy as np

# Rounds of drawing again the resamples that lack a class: each round keeps a resample with probability
# >= ~0.75 per class held by two or more groups (a class held by one group has its own stratum), so this
# bound is never met in practice; it only turns an impossible draw into an error instead of a hang.
MAX_REDRAWS = 10_000


def _members(codes: np.ndarray, n_codes: int) -> list[np.ndarray]:
    """Row indices of each code 0..n_codes-1, in row order."""
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.cumsum(np.bincount(codes, minlength=n_codes))[:-1])


def _group_strata(counts: np.ndarray) -> np.ndarray:
    """The stratum of each group, from its (n_groups, n_classes) row counts: its majority class (ties: the
    lowest class), with strata of one group collapsed.

    A stratum of one group draws it (`draws_from`), so a group alone in one is in every resample and none
    of its sampling error reaches an interval. Such a group joins another stratum (the survey statistician's
    "collapsed strata"): of the other strata, the one whose class it has most rows of (then the largest).
    A group that alone holds some class's test cases keeps a stratum of its own: no interval is given then
    (`single_unit_class`), and drawing it freely would only make resamples that lack the class.
    """
    n_groups, n_classes = counts.shape
    strata = counts.argmax(axis=1)
    holders = (counts > 0).sum(axis=0)
    sole = ((counts > 0) & (holders == 1)).any(axis=1)
    strata[sole] = n_classes + np.arange(int(sole.sum()))
    free = np.flatnonzero(~sole)
    sizes = np.bincount(strata[free], minlength=n_classes)
    for group in free[sizes[strata[free]] == 1]:
        others = [s for s in np.flatnonzero(sizes) if s != strata[group]]
        if sizes[strata[group]] >= 2 or not others:  # another lone group joined it, or nowhere to go
            continue
        target = max(others, key=lambda s: (counts[group, s], sizes[s]))
        sizes[strata[group]] -= 1
        sizes[target] += 1
        strata[group] = target
    return strata


def draws_from(n_units: int) -> int:
    """How many of a block's n units a resample draws: n - 1 (the rescaled bootstrap), one of one."""
    return max(n_units - 1, 1)


def _draw_within(rng: np.random.Generator, blocks: list[np.ndarray], n_resamples: int) -> np.ndarray:
    """(n_resamples, drawn) indices: each block's members (a class's rows, a stratum's groups) drawn with
    replacement, `draws_from` its size of them."""
    return np.concatenate(
        [g[rng.integers(0, len(g), size=(n_resamples, draws_from(len(g))))] for g in blocks], axis=1
    )


def _draw_weight(blocks: list[np.ndarray], n_units: int) -> np.ndarray:
    """(n_units,) the weight of one draw of each unit: its block's size over the draws it makes."""
    weight = np.ones(n_units)
    for block in blocks:
        weight[block] = len(block) / draws_from(len(block))
    return weight


def stratified_draws(
    labels: np.ndarray, n_resamples: int, seed: int, groups: np.ndarray | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """The rows each bootstrap resample of the test set draws, stratified by class and seeded (so paired
    across runs), and the weight of one draw of each row: a resample is the rows with those weights
    (`resample_weights`), never the rows alone, which under-weigh every class by one unit.

    Without groups each class is resampled within itself (`draws_from` its rows, each draw weighing the
    class's n / (n - 1)), so every resample weighs each class as the test set counts it. With `groups`
    (one patient/study id per row) whole groups are drawn with replacement within strata, a group's
    stratum being its majority class (see `_group_strata` for a stratum of one group); a resample that
    lacks a class is drawn again, so the bootstrap is conditional on every class being present
    (class-conditional metrics stay defined), and a group's rows always move together. Classes and groups
    are taken in sorted order.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0:
        raise ValueError("no test rows to resample")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    _, classes = np.unique(labels, return_inverse=True)
    classes = classes.ravel()
    n_classes = int(classes.max()) + 1
    if groups is None:
        blocks = _members(classes, n_classes)
        return list(_draw_within(rng, blocks, n_resamples)), _draw_weight(blocks, n)
    group_labels = np.asarray(groups)
    if len(group_labels) != n:
        raise ValueError(f"groups has {len(group_labels)} labels for {n} rows")
    _, group_codes = np.unique(group_labels, return_inverse=True)
    group_codes = group_codes.ravel()
    n_groups = int(group_codes.max()) + 1
    counts = np.zeros((n_groups, n_classes), dtype=int)
    np.add.at(counts, (group_codes, classes), 1)
    strata = _group_strata(counts)
    in_stratum = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    holds = counts > 0
    draws = _draw_within(rng, in_stratum, n_resamples)
    lacking = np.flatnonzero(~holds[draws].any(axis=1).all(axis=1))
    for _ in range(MAX_REDRAWS):
        if len(lacking) == 0:
            break
        draws[lacking] = _draw_within(rng, in_stratum, len(lacking))
        lacking = lacking[~holds[draws[lacking]].any(axis=1).all(axis=1)]
    if len(lacking):
        raise ValueError(f"{len(lacking)} of {n_resamples} resamples of the {n_groups} test groups still "
                         f"lacked a class after {MAX_REDRAWS} rounds of redrawing")
    members = _members(group_codes, n_groups)
    rows = [np.concatenate([members[g] for g in draw]) for draw in draws]
    return rows, _draw_weight(in_stratum, n_groups)[group_codes]


def unit_labels(labels: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """The class of each unit the bootstrap draws: each image, or with groups each group's images of one
    class (a class's evidence is its patients, not its slices)."""
    labels = np.asarray(labels)
    if groups is None:
        return labels
    return np.array([label for label, _ in sorted(set(zip(labels.tolist(), np.asarray(groups).tolist(),
                                                               strict=True)))], dtype=labels.dtype)


def single_unit_class(labels: np.ndarray, groups: np.ndarray | None = None) -> str | None:
    """"image" or "group" when some class's test cases are all one image, or all one group's images, else
    None. Every class-stratified resample then holds that unit, so nothing of its sampling error reaches
    an interval: one built from these resamples would be too narrow (estimands.summarise gives none)."""
    alone = (np.unique(unit_labels(labels, groups), return_counts=True)[1] == 1).any()
    return ("image" if groups is None else "group") if alone else None


def resample_weights(
    labels: np.ndarray, n_resamples: int, seed: int, groups: np.ndarray | None = None
) -> np.ndarray:
    """(n_resamples, n) weights of each test case: how often `stratified_draws` drew it, times the
    weight of one draw (its block's n / (n - 1)), so a class's images (a stratum's groups) weigh n."""
    n = len(labels)
    rows, weight = stratified_draws(labels, n_resamples, seed, groups)
    return np.stack([np.bincount(drawn, minlength=n) for drawn in rows]) * weight


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central `level` percentile interval of the finite values; NaN when there are none."""
    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).any():
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)
