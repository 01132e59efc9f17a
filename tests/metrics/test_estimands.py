"""The two-level (test set x seeds) interval, stratified resampling, the degenerate fallbacks (numpy only)."""

import numpy as np
import pytest
from scipy.stats import beta, norm
from scipy.stats import t as student_t

from benchmark.metrics import weighted
from benchmark.metrics.bootstrap import resample_weights, stratified_draws
from benchmark.metrics.estimands import (
    BOOTSTRAP,
    CLOPPER_PEARSON_FALLBACK,
    DEGENERATE,
    Interval,
    accuracy_counts,
    clopper_pearson_interval,
    seed_draws,
    small_classes,
    two_level_interval,
    two_level_replicates,
    wilson_interval,
)

N_DATASETS, N_PER_CLASS, N_SEEDS, N_RESAMPLES = 300, 60, 3, 200
TRUE_ACCURACY, TRUE_AUROC = 0.85, 0.85
SEED_NOISE = 0.15  # seeds see the same images and differ a little: correlated, as real trainings are


def mean_correct(weights: np.ndarray, y: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Accuracy from per-row correctness (the seed's 'probabilities' here), on each resample's weights."""
    return weights @ correct / weights.sum(axis=1)


def accuracy_dataset(rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each image has a difficulty; a seed gets it right when difficulty plus a little seed noise is below
    the cut that makes every seed's true accuracy TRUE_ACCURACY. Returns labels and per-seed correctness."""
    y = np.repeat([0, 1], N_PER_CLASS)
    difficulty = rng.normal(size=len(y))
    cut = norm.ppf(TRUE_ACCURACY) * np.sqrt(1 + SEED_NOISE**2)
    return y, [difficulty + rng.normal(0, SEED_NOISE, len(y)) < cut for _ in range(N_SEEDS)]


def auroc_dataset(rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """Scores N(0, 1) for negatives and N(d, 1) for positives, plus a little seed noise; each seed's true
    AUROC is Phi(d / sqrt(2 (1 + noise^2))) = TRUE_AUROC."""
    y = np.repeat([0, 1], N_PER_CLASS)
    separation = norm.ppf(TRUE_AUROC) * np.sqrt(2 * (1 + SEED_NOISE**2))
    latent = rng.normal(size=len(y)) + separation * y
    by_seed = []
    for _ in range(N_SEEDS):
        p1 = 1 / (1 + np.exp(-(latent + rng.normal(0, SEED_NOISE, len(y)))))
        by_seed.append(np.column_stack([1 - p1, p1]))
    return y, by_seed


def seeds_t_interval(per_seed: list[float], level: float = 0.95) -> tuple[float, float]:
    """The current method: mean +- t * sd / sqrt(n) over the seeds' test metrics."""
    values = np.asarray(per_seed)
    half = student_t.ppf(1 - (1 - level) / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return values.mean() - half, values.mean() + half


def test_two_level_interval_covers_the_truth_and_the_seeds_t_interval_does_not():
    rng = np.random.default_rng(20240611)
    covered = {"accuracy": [0, 0], "AUROC": [0, 0]}  # [two-level bootstrap, t over seeds]
    for dataset in range(N_DATASETS):
        for name, make, metric, truth in (
            ("accuracy", accuracy_dataset, mean_correct, TRUE_ACCURACY),
            ("AUROC", auroc_dataset, weighted.macro_auroc, TRUE_AUROC),
        ):
            y, by_seed = make(rng)
            interval = two_level_interval(metric, y, by_seed, N_RESAMPLES, dataset, 0.95)
            assert interval.method == BOOTSTRAP and interval.n_valid == N_RESAMPLES
            low, high = seeds_t_interval([metric(np.ones((1, len(y))), y, p)[0] for p in by_seed])
            covered[name][0] += interval.low <= truth <= interval.high
            covered[name][1] += low <= truth <= high

    for name, (two_level, t_over_seeds) in covered.items():
        print(f"\n{name}: 95% two-level bootstrap covers {two_level / N_DATASETS:.1%}, "
              f"t-interval over {N_SEEDS} seeds covers {t_over_seeds / N_DATASETS:.1%} of {N_DATASETS}")
        assert 0.92 <= two_level / N_DATASETS <= 0.98, name
        assert t_over_seeds / N_DATASETS < 0.80, name


def class_counts(labels: np.ndarray, rows: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(labels[rows], minlength=n_classes)


def test_stratified_resamples_keep_every_class_where_plain_resampling_loses_a_rare_one():
    labels = np.repeat([0, 1, 2], [100, 18, 2])  # class 2: 2 of 120 images
    resamples = stratified_draws(labels, 2000, 7)[0]
    assert len(resamples) == 2000
    for rows in resamples:
        assert np.array_equal(class_counts(labels, rows, 3), [99, 17, 1])  # n - 1 draws of each class's n
    weights = resample_weights(labels, 2000, 7)
    for k, n in enumerate([100, 18, 2]):  # each draw weighs n / (n - 1): a class weighs as in the test set
        np.testing.assert_allclose(weights[:, labels == k].sum(axis=1), n)

    plain = np.random.default_rng(7).integers(0, len(labels), size=(2000, len(labels)))
    missed = np.mean([class_counts(labels, rows, 3)[2] == 0 for rows in plain])
    assert missed == pytest.approx((118 / 120) ** 120, abs=0.03)  # ~13%


def test_stratified_resamples_are_seeded_and_take_any_labels():
    labels = np.array(["b", "a", "b", "c", "a", "b"])
    first, again = stratified_draws(labels, 50, 3)[0], stratified_draws(labels, 50, 3)[0]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    other = stratified_draws(labels, 50, 4)[0]
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    for weights in resample_weights(labels, 50, 3):
        assert {k: weights[labels == k].sum() for k in "abc"} == pytest.approx({"a": 2, "b": 3, "c": 1})


def rows_move_together(groups: np.ndarray, rows: np.ndarray) -> bool:
    """Each group's rows are drawn the same number of times: whole groups, never some of their rows."""
    drawn = np.bincount(rows, minlength=len(groups))
    return all(len(set(drawn[groups == g])) == 1 for g in np.unique(groups))


def test_group_rows_move_together_and_every_class_stays():
    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 6, size=30)
    groups = np.repeat([f"patient{g:02d}" for g in range(30)], sizes)
    labels = np.repeat(rng.integers(0, 3, size=30), sizes)
    labels[rng.random(len(labels)) < 0.1] = 3  # class 3: a few rows scattered, nobody's majority
    rng.shuffle(order := np.arange(len(labels)))
    groups, labels = groups[order], labels[order]
    assert set(labels) == {0, 1, 2, 3}
    for rows in stratified_draws(labels, 500, 11, groups)[0]:
        assert rows_move_together(groups, rows)
        assert np.all(class_counts(labels, rows, 4) > 0)
        assert np.bincount(rows, minlength=len(groups))[np.unique(groups, return_index=True)[1]].sum() == 27


def test_a_class_only_ever_in_the_minority_is_kept():
    """Class 2 is nobody's majority: by majority strata alone, drawing p1 twice and p2 twice would lose it."""
    groups = np.array(["p0", "p0", "p0", "p1", "p1", "p2", "p2", "p3", "p3", "p3"])
    labels = np.array([0, 0, 2, 0, 0, 1, 1, 1, 1, 2])
    for rows in stratified_draws(labels, 500, 2, groups)[0]:
        assert rows_move_together(groups, rows)
        assert np.all(class_counts(labels, rows, 3) > 0)


def test_four_correct_images_fall_back_to_clopper_pearson():
    y = np.array([0, 0, 1, 1])
    right = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]])
    by_seed = [right, right, right]
    interval = two_level_interval(
        weighted.accuracy, y, by_seed, 200, 0, 0.95, proportion_counts=accuracy_counts
    )
    assert isinstance(interval, Interval)
    assert interval.method == CLOPPER_PEARSON_FALLBACK == "Clopper-Pearson (bootstrap degenerate)"
    assert interval.estimate == 1.0 and interval.high - interval.low > 0.5
    assert interval.low == pytest.approx(beta.ppf(0.025, 4, 1)) and interval.high == 1.0
    assert (interval.n_valid, interval.n_resamples) == (200, 200)

    found = two_level_interval(weighted.accuracy, y, by_seed, 200, 0, 0.95)  # no counts: no interval at all
    assert found.method == DEGENERATE and np.isnan(found.low) and np.isnan(found.high)


def test_clopper_pearson_and_wilson_bounds():
    assert clopper_pearson_interval(7, 20, 0.9) == pytest.approx(
        (beta.ppf(0.05, 7, 14), beta.ppf(0.95, 8, 13))
    )
    assert clopper_pearson_interval(0, 5, 0.95) == pytest.approx((0.0, beta.ppf(0.975, 1, 5)))
    z = norm.ppf(0.975)
    assert wilson_interval(20, 20, 0.95) == pytest.approx((20 / (20 + z**2), 1.0))
    wilson, exact = wilson_interval(7, 20, 0.95), clopper_pearson_interval(7, 20, 0.95)
    assert exact[0] < wilson[0] < 0.35 < wilson[1] < exact[1]  # the exact interval is the wider
    assert all(np.isnan(clopper_pearson_interval(0, 0, 0.95))) and all(np.isnan(wilson_interval(0, 0, 0.95)))


def test_undefined_replicates_are_counted():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 20)
    by_seed = [rng.random((40, 2)) for _ in range(2)]

    def undefined_with_row_zero(weights, labels, probabilities):  # NaN in every replicate that draws row 0
        return np.where(weights[:, 0] > 0, np.nan, 0.5)

    interval = two_level_interval(undefined_with_row_zero, y, by_seed, 300, 4, 0.95)
    drew_row_zero = np.mean([0 in rows for rows in stratified_draws(y, 300, 4)[0]])
    assert interval.n_resamples == 300 and interval.n_valid == round(300 * (1 - drew_row_zero))
    assert 0 < interval.n_valid < 300


def test_replicates_average_the_drawn_seeds_on_the_same_test_resample():
    per_seed = np.array([[0.1, 0.2, 0.3], [0.5, 0.6, 0.7]])  # 2 seeds x 3 test resamples
    draws = np.array([[0, 0], [0, 1], [1, 1]])
    assert two_level_replicates(per_seed, draws) == pytest.approx([0.1, 0.4, 0.7])
    assert seed_draws(3, 5, [0, 1]).shape == (5, 2)  # n - 1 of the n seeds: their mean's variance exact
    assert seed_draws(1, 5, [0, 1]).shape == (5, 1)
    assert np.array_equal(seed_draws(3, 5, [0, 1]), seed_draws(3, 5, [0, 1]))


def test_small_classes():
    y = np.repeat([0, 1, 3], [40, 9, 10])
    assert small_classes(y, ["normal", "benign", "rare", "malignant"]) == ["benign", "rare"]
    assert small_classes(y, ["normal", "benign", "rare", "malignant"], minimum=5) == ["rare"]
