"""Resampling the test set: stratified by class, by patient group when there are groups, and seeded, so
every row of a dataset is scored on the same resamples and comparisons between rows are paired.

A resample is returned as case weights (how often each test case was drawn): `weighted.py` scores a
whole (B, n) weight matrix at once. Every class is in every resample, so class-conditional metrics
(sensitivity, AUROC, macro-F1) are defined in all of them: images are stratified by class; with groups
(patients, studies, sites) whole groups are drawn, since slices of one patient are not independent,
stratified by majority class as far as that leaves every group free to vary (all but a class's only
group, which gets no interval), a resample lacking a class drawn again.
"""

import numpy as np

# Rounds of drawing again the resamples that lack a class: each round keeps a resample with probability
# >= ~0.86 per class held by two or more groups (a class held by one group has its own stratum), so this
# bound is never met in practice; it only turns an impossible draw into an error instead of a hang.
MAX_REDRAWS = 10_000


def _members(codes: np.ndarray, n_codes: int) -> list[np.ndarray]:
    """Row indices of each code 0..n_codes-1, in row order."""
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.cumsum(np.bincount(codes, minlength=n_codes))[:-1])


def _group_strata(counts: np.ndarray) -> np.ndarray:
    """The stratum of each group, from its (n_groups, n_classes) row counts: its majority class (ties: the
    lowest class), with strata of one group collapsed.

    A stratum draws as many groups as it holds, so a group alone in one is in every resample and none of
    its sampling error reaches an interval. Such a group joins another stratum (the survey statistician's
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


def _draw_within(rng: np.random.Generator, blocks: list[np.ndarray], n_resamples: int) -> np.ndarray:
    """(n_resamples, total) indices: each block's members (a class's rows, a stratum's groups) drawn with
    replacement, as many as it holds."""
    return np.concatenate(
        [g[rng.integers(0, len(g), size=(n_resamples, len(g)))] for g in blocks], axis=1
    )


def stratified_indices(
    labels: np.ndarray, n_resamples: int, seed: int, groups: np.ndarray | None = None
) -> list[np.ndarray]:
    """Rows of each bootstrap resample of the test set, stratified by class; seeded, so paired across runs.

    Without groups each class is resampled within itself (as many draws as it has rows), so every
    resample has exactly the test set's class counts. With `groups` (one patient/study id per row) whole
    groups are drawn with replacement within strata, a group's stratum being its majority class (see
    `_group_strata` for a stratum of one group); a resample that lacks a class is drawn again, so the
    bootstrap is conditional on every class being present (class-conditional metrics stay defined), and
    a group's rows always move together. Classes and groups are taken in sorted order.
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
        return list(_draw_within(rng, _members(classes, n_classes), n_resamples))
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
    return [np.concatenate([members[g] for g in draw]) for draw in draws]


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
    """(n_resamples, n) draw counts of each test case: `stratified_indices` as weights."""
    n = len(labels)
    return np.stack(
        [np.bincount(rows, minlength=n) for rows in stratified_indices(labels, n_resamples, seed, groups)]
    ).astype(float)


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central `level` percentile interval of the finite values; NaN when there are none."""
    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).any():
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)
