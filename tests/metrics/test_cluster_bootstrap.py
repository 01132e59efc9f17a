"""The cluster bootstrap: resampling patients, not their near-identical slices (numpy only)."""

import numpy as np
import pytest

from benchmark.metrics.bootstrap import percentile_interval, resample_weights, stratified_draws
from benchmark.metrics.estimands import CLOPPER_PEARSON_FALLBACK, sensitivity_counts, specificity_counts
from benchmark.metrics.evaluate import Settings, confidence_intervals, evaluate

SETTINGS = Settings(ci_level=0.95, n_bootstrap=500, bootstrap_seed=0, ece_bins=10)


def patients(n_patients: int = 10, slices: int = 20, seed: int = 0):
    """Labels, probabilities and patient ids: every slice of a patient is (nearly) the same prediction,
    so a patient is right or wrong as a whole: 10 patients are 10 observations, not 200."""
    rng = np.random.default_rng(seed)
    y, p, groups = [], [], []
    for k in range(n_patients):
        label = k % 2
        right = k not in (1, 4, 7)  # 7 of 10 patients classified correctly
        centre = 0.8 if right == (label == 1) else 0.2  # P(class 1)
        for _ in range(slices):
            p1 = float(np.clip(centre + rng.normal(0, 0.02), 0.01, 0.99))
            y.append(label)
            p.append([1 - p1, p1])
            groups.append(f"patient{k:02d}")
    return np.array(y), np.array(p), groups


def test_cluster_resamples_take_whole_groups():
    groups = np.array(["b", "a", "b", "c", "a", "c", "c"])
    labels = np.zeros(len(groups), dtype=int)  # one class: one stratum, so every draw is a free choice
    resamples = stratified_draws(labels, 200, 1, groups)[0]
    assert isinstance(resamples, list) and len(resamples) == 200
    sizes = {"a": 2, "b": 2, "c": 3}
    for rows in resamples:
        drawn = [groups[i] for i in rows]
        counts = {g: drawn.count(g) for g in sizes}
        assert all(counts[g] % sizes[g] == 0 for g in sizes)  # every drawn group comes whole
        assert sum(counts[g] // sizes[g] for g in sizes) == 2  # n - 1 draws of the stratum's n groups
    weights = resample_weights(labels, 200, 1, groups)
    drawn_groups = weights[:, [list(groups).index(g) for g in sizes]]  # one row of each group
    np.testing.assert_allclose(drawn_groups.sum(axis=1), 3)  # each draw weighs 3 / 2: the stratum weighs 3
    again = stratified_draws(labels, 200, 1, groups)[0]
    assert all(np.array_equal(a, b) for a, b in zip(resamples, again, strict=True))
    assert len({len(rows) for rows in resamples}) > 1  # replicates differ in size


def test_cluster_interval_of_accuracy_is_much_wider_than_the_image_one():
    y, p, groups = patients()
    correct = (p.argmax(axis=1) == y).astype(float)
    assert correct.mean() == 0.7

    def width(weights: np.ndarray) -> float:
        low, high = percentile_interval(weights @ correct / weights.sum(axis=1), 0.95)
        return high - low

    image = width(resample_weights(y, 1000, 0))
    cluster = width(resample_weights(y, 1000, 0, np.array(groups)))
    assert cluster >= 2 * image, (cluster, image)
    assert cluster >= 0.4  # about ±0.28 for 7 of 10 patients


def test_evaluate_records_the_bootstrap_unit():
    y, p, groups = patients()
    by_image = evaluate(y, p, ["normal", "abnormal"], SETTINGS)
    by_patient = evaluate(y, p, ["normal", "abnormal"], SETTINGS, groups=groups)
    assert (by_image["bootstrap_unit"], by_image["n_test_groups"]) == ("image", None)
    assert (by_patient["bootstrap_unit"], by_patient["n_test_groups"]) == ("group", 10)
    assert by_patient["accuracy"] == by_image["accuracy"]  # point estimates do not depend on groups
    image_width = by_image["accuracy_ci_high"] - by_image["accuracy_ci_low"]
    patient_width = by_patient["accuracy_ci_high"] - by_patient["accuracy_ci_low"]
    assert patient_width >= 2 * image_width
    same = confidence_intervals(y, p, SETTINGS, groups)
    assert same["accuracy_ci_low"] == by_patient["accuracy_ci_low"]


def test_a_class_whose_test_cases_are_one_patient_has_no_interval():
    """Every class-stratified resample draws that patient: its variability would be missing from any
    interval (macro-F1 read [0.739, 0.756] on four test patients before), and its slices are not
    independent images for an exact interval either."""
    y, p, groups = patients()
    keep = (y == 0) | (np.array(groups) == "patient01")  # class 1: patient01's slices alone
    y, p, groups = y[keep], p[keep], list(np.array(groups)[keep])
    found = confidence_intervals(y, p, SETTINGS, groups)
    assert {found[f"{key}_ci_method"] for key in ("accuracy", "macro_f1", "macro_auroc")} == {
        "not estimable (a class has a single test group)"}
    assert np.isnan(found["accuracy_ci_low"]) and np.isnan(found["macro_f1_ci_high"])
    by_image = confidence_intervals(y, p, SETTINGS)  # the same cases as independent images: resampled
    assert by_image["accuracy_ci_method"] == "test-set bootstrap (no seed spread)"  # one run: one training
    assert by_image["accuracy_ci_low"] < 1


def test_a_class_of_one_test_image_gives_exact_intervals_for_proportions_and_none_for_the_rest():
    y, p, _ = patients()
    y, p = np.append(y[y == 0], 1), np.vstack([p[y == 0], [[0.3, 0.7]]])  # class 1: one image
    found = confidence_intervals(y, p, SETTINGS)
    assert found["accuracy_ci_method"] == CLOPPER_PEARSON_FALLBACK and found["accuracy_ci_low"] < 1
    assert found["macro_auroc_ci_method"] == "not estimable (a class has a single test image)"
    assert np.isnan(found["macro_auroc_ci_low"])


def draws_of(group: str, groups: np.ndarray, resamples: list[np.ndarray]) -> set[int]:
    """How many times `group` was drawn, over the resamples (its rows move together)."""
    first = int(np.flatnonzero(groups == group)[0])
    return {int(np.count_nonzero(rows == first)) for rows in resamples}


def test_a_patient_alone_in_its_majority_class_is_not_in_every_resample():
    """Class 2 is the majority of p0 only: a stratum of one group drew p0 exactly once in every resample, so
    nothing of p0's sampling error reached an interval. Collapsed into another stratum it varies, and a
    resample that would lose class 2 is drawn again."""
    groups = np.array(["p0"] * 4 + ["p1"] * 3 + ["p2"] * 2 + ["p3"] * 3 + ["p4"] * 2)
    labels = np.array([2, 2, 2, 0, 0, 0, 2, 0, 0, 1, 1, 2, 1, 1])
    resamples = stratified_draws(labels, 400, 3, groups)[0]
    assert len(draws_of("p0", groups, resamples)) >= 3
    assert all(set(labels[rows]) == {0, 1, 2} for rows in resamples)
    sizes = {g: int(np.count_nonzero(groups == g)) for g in np.unique(groups)}
    for rows in resamples:  # strata {p0, p1, p2} and {p3, p4}: n - 1 of each drawn, whole
        assert sum(np.count_nonzero(groups[rows] == g) // n for g, n in sizes.items()) == 3


def test_a_class_that_is_nobodys_majority_does_not_pin_a_patient():
    """Class 2 is a minority in p0 and p2, each in a stratum with a patient without it: the old repair gave
    p0 a stratum of its own, drawn once in every resample."""
    groups = np.array(["p0"] * 3 + ["p1"] * 2 + ["p2"] * 3 + ["p3"] * 2)
    labels = np.array([0, 0, 2, 0, 0, 1, 1, 2, 1, 1])
    resamples = stratified_draws(labels, 400, 5, groups)[0]
    assert all(len(draws_of(g, groups, resamples)) >= 2 for g in ("p0", "p1", "p2", "p3"))
    assert all(2 in labels[rows] for rows in resamples)


def test_the_only_patient_of_a_class_stays_in_every_resample_and_gets_no_interval():
    """Drawing it freely would only make resamples without the class; no interval is given instead."""
    y, p, groups = patients()
    groups = np.array(groups)
    y[groups == "patient02"] = 2  # class 2: patient02's slices alone
    p = np.hstack([p * 0.9, np.full((len(y), 1), 0.1)])
    resamples = stratified_draws(y, 200, 0, groups)[0]
    assert draws_of("patient02", groups, resamples) == {1}
    assert draws_of("patient00", groups, resamples) != {1}
    found = confidence_intervals(y, p, SETTINGS, list(groups))
    assert found["accuracy_ci_method"] == "not estimable (a class has a single test group)"


def test_an_exact_interval_on_a_grouped_split_counts_patients_not_slices():
    """24 slices of 6 patients, all right: the bootstrap is degenerate, and the exact interval of 24
    independent images, [0.858, 1], would claim four times the evidence there is."""
    y = np.repeat([0, 1], 12)
    groups = np.repeat([f"pt{k}" for k in range(6)], 4)
    p = np.where(y[:, None] == np.arange(2), 0.9, 0.1)
    by_image = confidence_intervals(y, p, SETTINGS)
    by_patient = confidence_intervals(y, p, SETTINGS, list(groups))
    assert by_image["accuracy_ci_method"] == by_patient["accuracy_ci_method"] == CLOPPER_PEARSON_FALLBACK
    assert by_image["accuracy_ci_low"] == pytest.approx(0.025 ** (1 / 24))
    assert by_patient["accuracy_ci_low"] == pytest.approx(0.025 ** (1 / 6))  # 0.541
    assert by_patient["accuracy_ci_high"] == 1.0
    p[0] = [0.1, 0.9]  # one slice of pt0 wrong: per class, counts in that class's patients
    hits, positives = sensitivity_counts(y, p, groups)
    assert hits == pytest.approx([11 / 12 * 3, 3]) and list(positives) == [3, 3]
    negatives_right, negatives = specificity_counts(y, p, groups)
    assert negatives_right == pytest.approx([3, 11 / 12 * 3]) and list(negatives) == [3, 3]
    assert sensitivity_counts(y, p)[0].tolist() == [11, 12]  # without groups, images


@pytest.mark.parametrize("grouped", [False, True])
def test_the_bootstrap_variance_of_a_mean_is_the_textbook_one_with_few_units_per_class(grouped: bool):
    """QA's methods reviewer: with 3 patients a class the intervals covered too little (the README's
    simulation). Drawing n of n units gives a mean the variance (n - 1) / n of s^2 / n (two thirds of it at
    n = 3); the rescaled bootstrap's n - 1 draws, each weighing n / (n - 1), give it exactly."""
    rng = np.random.default_rng(0)
    per_class = 3
    labels = np.repeat([0, 1], per_class * 2)  # two rows per unit: a patient's two slices when grouped
    units = np.repeat(np.arange(per_class * 2), 2)
    value_of_unit = rng.normal(size=per_class * 2)
    values = value_of_unit[units]
    weights = resample_weights(labels, 40_000, 1, units.astype(str) if grouped else None)
    means = weights @ values / weights.sum(axis=1)  # per class the same weight, so the overall mean
    per_unit = values.reshape(-1, 2)[:, 0] if grouped else values
    unit_classes = labels.reshape(-1, 2)[:, 0] if grouped else labels
    textbook = sum((per_unit[unit_classes == k].var(ddof=1) / np.sum(unit_classes == k)) / 4 for k in (0, 1))
    assert np.var(means) == pytest.approx(textbook, rel=0.04)


def test_the_seeds_draws_give_their_mean_the_textbook_variance():
    from benchmark.metrics.estimands import seed_draws, two_level_replicates

    per_seed = np.array([[0.70], [0.75], [0.62]]).repeat(40_000, axis=1)  # 3 seeds, one test resample each
    replicates = two_level_replicates(per_seed, seed_draws(3, 40_000, [0, 1]))
    assert np.var(replicates) == pytest.approx(np.var(per_seed[:, 0], ddof=1) / 3, rel=0.04)
