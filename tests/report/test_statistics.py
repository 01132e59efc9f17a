"""The report's statistics on made-up predictions: intervals, validation choice, all-pairs tests, warnings."""

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from benchmark.metrics.estimands import BOOTSTRAP, CLOPPER_PEARSON_FALLBACK, TEST_SET_ONLY
from benchmark.metrics.evaluate import Settings
from benchmark.report.document import comparisons, row_notes, small_test_warnings
from benchmark.report.estimates import NotComparable
from benchmark.report.load import Run
from benchmark.report.paired import against_first, p_text, paired_bootstrap
from benchmark.report.rows import (
    Row,
    choose_on_validation,
    estimate,
    group_rows,
    pareto_front,
    rank,
    training_time,
    with_estimates,
)
from benchmark.report.tables import fmt_estimate

CLASSES = ("normal", "pneumonia", "tumor")
SETTINGS = Settings(ci_level=0.95, n_bootstrap=300, bootstrap_seed=0, ece_bins=15)


def fake_run(backbone: str, probabilities: np.ndarray, labels: np.ndarray, seed: int = 0,
             classes: tuple[str, ...] = CLASSES, **metrics) -> Run:
    """One run from made-up test predictions (as predictions.csv holds them), for the statistics alone."""
    table = pd.DataFrame({"file": [f"img{i:03d}.png" for i in range(len(labels))]})
    table["true_label"] = np.asarray(classes)[labels]
    for k, name in enumerate(classes):
        table[f"prob_{name}"] = probabilities[:, k]
    record = {
        "dataset": "synthetic",
        "backbone": backbone,
        "config_hash": "h",
        "classes": list(classes),
        "seed": seed,
        "weights_used": "random",
        **metrics,
    }
    return Run(f"runs/{backbone}/seed{seed}", record, {}, table, None)


def rows_of(*runs: Run) -> list[Row]:
    return with_estimates(group_rows(list(runs))["synthetic"], SETTINGS)


def noisy(labels: np.ndarray, signal: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.eye(3)[labels] * signal + rng.dirichlet(np.ones(3), len(labels)) * (1 - signal)


LABELS = np.repeat(np.arange(3), 30)


def test_a_row_is_the_seed_mean_with_a_two_level_interval():
    runs = [fake_run("m", noisy(LABELS, 0.3, seed), LABELS, seed=seed) for seed in range(3)]
    (row,) = rows_of(*runs)
    found = estimate(row, "accuracy")
    per_seed = [np.mean(r.predictions.filter(like="prob_").to_numpy().argmax(1) == LABELS) for r in runs]
    assert found.method == BOOTSTRAP and found.estimate == pytest.approx(np.mean(per_seed))
    assert found.low < found.estimate < found.high and found.n_valid == found.n_resamples == 300
    assert found.high - found.low > 0.1  # 90 images: the test-set error dominates, not the seed spread
    assert estimate(row, "sensitivity_tumor").method == BOOTSTRAP


def test_seeds_that_predict_identically_are_one_training_and_say_so():
    """QA: a probe's seeds (a deterministic fit on one extractor's features) had byte-identical predictions
    and the row's interval was called two-level, as if it held a seed-to-seed spread."""
    same = noisy(LABELS, 0.3, 0)
    (probe,) = rows_of(*[fake_run("probe", same, LABELS, seed=seed) for seed in range(2)])
    (one,) = rows_of(fake_run("one", same, LABELS))
    (trained,) = rows_of(*[fake_run("trained", noisy(LABELS, 0.3, s), LABELS, seed=s) for s in range(2)])
    assert estimate(probe, "accuracy").method == estimate(one, "accuracy").method == TEST_SET_ONLY
    assert (estimate(probe, "accuracy").low, estimate(probe, "accuracy").high) == (
        estimate(one, "accuracy").low, estimate(one, "accuracy").high)  # drawing its seeds adds nothing
    assert estimate(trained, "accuracy").method == BOOTSTRAP
    (note,) = [line for line in row_notes([probe, one, trained]) if "without a seed-to-seed spread" in line]
    assert note.endswith(": probe, one")


def test_three_images_all_right_do_not_get_a_zero_width_interval():
    labels = np.array([0, 1, 2])
    (row,) = rows_of(fake_run("m", np.eye(3), labels))
    found = estimate(row, "accuracy")
    assert found.estimate == 1.0 and found.method == CLOPPER_PEARSON_FALLBACK
    assert found.high - found.low > 0.5
    warnings = "\n".join(small_test_warnings([row], "accuracy"))
    assert "single test image:** normal, pneumonia, tumor" in warnings and "Few test" in warnings
    assert estimate(row, "macro_auroc").method == "not estimable (a class has a single test image)"


def test_a_class_of_one_test_patient_leaves_every_metric_without_an_interval():
    """The bootstrap draws that patient in every resample: an interval would be too narrow, and its slices
    are no independent images for an exact one."""
    labels = np.repeat(np.arange(3), [20, 20, 4])
    runs = [fake_run(name, noisy(labels, signal, 0), labels) for name, signal in (("m", 0.3), ("n", 0.1))]
    for run in runs:
        run.predictions["group"] = [f"p{i % 5}" for i in range(40)] + ["p9"] * 4  # tumor: patient p9 alone
    row, other = sorted(rows_of(*runs), key=lambda r: r.label)
    compared = against_first([row, other], "accuracy", 0.95)  # nor a difference between rows: no p-value
    assert not compared.ranking and compared.not_comparable == [
        (other.label, "a class has a single test group, which every resample holds")]
    report_cfg = OmegaConf.create({"primary_metric": "accuracy", "digits": 3})
    section = comparisons([row, other], report_cfg, SETTINGS)
    assert "| #1 vs |" not in section and "No row could be compared with #1" in section  # QA: an empty table
    assert {estimate(row, key).method for key in ("accuracy", "macro_auroc", "sensitivity_tumor")} == {
        "not estimable (a class has a single test group)"}
    assert fmt_estimate(estimate(row, "accuracy"), 3).endswith("(no CI)")
    warnings = "\n".join(small_test_warnings([row], "accuracy"))
    assert "A class has a single test group:** tumor" in warnings and "(no CI)" in warnings  # no split_by
    assert "bootstrap was degenerate" not in warnings  # its reason is the single patient, said once
    assert "Few test groups:** normal (5), pneumonia (5), tumor (1)" in warnings  # QA: it spoke
    assert "intervals are wide" not in warnings and "too narrow" not in warnings  # of intervals none has
    assert "two or more of its groups: a larger test share (`dataset.split`)" in warnings  # the way out
    for run in runs:  # QA: the user's own train/ val/ test/ folders: no setting moves their test split
        run.metrics["split_from"] = "folders"
    warnings = "\n".join(small_test_warnings(sorted(rows_of(*runs), key=lambda r: r.label)[:1], "accuracy"))
    assert "two or more of its groups: add groups of that class to the test/ folder" in warnings
    assert "dataset.split" not in warnings


def test_a_degenerate_interval_of_another_metric_is_noted_not_a_reason_not_to_rank():
    """One class always right (its sensitivity 1.0 in every resample) says nothing about the ranking."""
    probabilities = noisy(LABELS, 0.3, 0)
    probabilities[LABELS == 0] = np.eye(3)[0]
    (row,) = rows_of(fake_run("m", probabilities, LABELS))
    assert estimate(row, "accuracy").method == TEST_SET_ONLY  # one seed: a bootstrap, not a fallback
    assert estimate(row, "sensitivity_normal").method == CLOPPER_PEARSON_FALLBACK
    warnings = "\n".join(small_test_warnings([row], "accuracy"))
    assert "too small to rank on" not in warnings and "sensitivity_normal (every resample" in warnings


def test_a_four_image_class_is_warned_about():
    labels = np.repeat(np.arange(3), [40, 40, 4])
    (row,) = rows_of(fake_run("m", noisy(labels, 0.2, 0), labels))
    warnings = "\n".join(small_test_warnings([row], "accuracy"))
    assert "Few test cases:** tumor (4)" in warnings and "normal" not in warnings
    assert np.isfinite(estimate(row, "sensitivity_tumor").low)  # stratified: tumor is in every resample


def test_validation_chooses_the_row_even_when_another_configuration_tests_better():
    lucky = fake_run("m", np.eye(3)[LABELS], LABELS, best_val_loss=0.9)  # best on test, worse on validation
    chosen = fake_run("m", noisy(LABELS, 0.3, 1), LABELS, best_val_loss=0.4)
    lucky.metrics["config_hash"], chosen.metrics["config_hash"] = "lucky", "chosen"
    rows, families = choose_on_validation(rows_of(lucky, chosen))
    assert [row.config_hash for row in rows] == ["chosen"]
    (family,) = families.values()  # one backbone, regime, size and weights: one family of two
    assert [row.config_hash for row in family] == ["chosen", "lucky"]


def test_imagenet_and_random_seeds_of_one_backbone_are_two_rows():
    """A partly offline sweep: seed 0 got ImageNet weights, seed 1 fell back to random init."""
    runs = [
        fake_run("resnet50", np.eye(3)[LABELS], LABELS, seed=seed, weights_used=weights)
        for seed, weights in ((0, "imagenet"), (1, "random (imagenet unavailable)"))
    ]
    rows = group_rows(runs)["synthetic"]
    assert sorted(row.label for row in rows) == [
        "resnet50 (imagenet)",
        "resnet50 (random (imagenet unavailable))",
    ]
    assert all(len(row.runs) == 1 for row in rows)
    assert len(choose_on_validation(rows)[0]) == 2  # weights are part of the row: both stay


def test_paired_bootstrap_tells_a_real_difference_from_none():
    good, noise = noisy(LABELS, 0.8, 0), noisy(LABELS, 0.0, 1)
    first, second = rows_of(fake_run("good", good, LABELS), fake_run("noise", noise, LABELS))
    better = paired_bootstrap(first, second, "macro_auroc", 0.95)
    assert better.observed > 0.3 and better.low > 0 and better.p_value == pytest.approx(1 / 300)
    assert better.at_floor and p_text(better) == "< 0.0033"  # never printed as if exact
    a, b = rows_of(fake_run("a", noise, LABELS), fake_run("b", noise, LABELS))
    same = paired_bootstrap(a, b, "macro_auroc", 0.95)
    assert same.observed == 0 and same.p_value == 1.0 and p_text(same) == "1"
    short = LABELS[:-3]
    a, b = rows_of(fake_run("a", noise, LABELS), fake_run("b", noise[:-3], short))
    with pytest.raises(NotComparable, match="different test sets"):
        paired_bootstrap(a, b, "macro_auroc", 0.95)


def test_all_pairs_are_holm_corrected_and_each_family_has_one_comparison_per_row():
    runs = [
        fake_run(name, noisy(LABELS, signal, i), LABELS)
        for i, (name, signal) in enumerate((("best", 0.8), ("close", 0.78), ("poor", 0.1), ("worst", 0.0)))
    ]
    rows = rank(rows_of(*runs), "accuracy")
    assert rows[0].backbone == "best"
    found = against_first(rows, "accuracy", 0.95)
    assert [c.second for c in found.ranking] == [c.second for c in found.auroc] == ["close", "poor", "worst"]
    assert {c.method for c in found.auroc + found.auroc_per_class} == {"DeLong (seeds held fixed)"}
    by_auroc = against_first(rank(rows_of(*runs), "macro_auroc"), "macro_auroc", 0.95)
    assert by_auroc.auroc == [] and len(by_auroc.auroc_per_class) == 9  # macro-AUROC tested once: ranking
    assert len(found.auroc_per_class) == 3 * 3 and not found.not_comparable
    for family in (found.ranking, found.auroc, found.auroc_per_class):
        raw = np.array([c.p_value for c in family])
        adjusted = np.array([c.p_adjusted for c in family])
        assert np.all(adjusted >= raw - 1e-12) and np.all(adjusted <= 1)
    by_name = {c.second: c for c in found.auroc}
    assert by_name["close"].p_adjusted > 0.05 and by_name["worst"].p_adjusted < 0.05


def test_ranking_and_pareto_front():
    low = fake_run("low", np.eye(3)[LABELS], LABELS, accuracy=0.9, ece=0.3)
    high = fake_run("high", np.eye(3)[LABELS], LABELS, accuracy=0.8, ece=0.1)
    rows = group_rows([low, high])["synthetic"]
    assert [r.label for r in rank(rows, "accuracy")] == ["low", "high"]
    assert [r.label for r in rank(rows, "ece")] == ["high", "low"]  # lower ECE is better
    latency, accuracy = np.array([10.0, 20.0, 30.0, 15.0]), np.array([0.7, 0.9, 0.8, 0.6])
    assert pareto_front(latency, accuracy).tolist() == [True, True, False, False]


def test_a_binary_leaderboard_judges_both_classes_at_their_thresholds():
    """Folder names sort: covid/normal makes normal "index 1"; neither class is assumed the disease."""
    from benchmark.metrics.operating_points import operating_points_record
    from benchmark.report.tables import operating_points_table

    labels = np.repeat([0, 1], 40)
    probabilities = noisy(labels, 0.4, 0)[:, :2]
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    points = operating_points_record(labels, probabilities, labels, probabilities, ["covid", "normal"], 0.9)
    run = fake_run("m", probabilities, labels, classes=("covid", "normal"), operating_points=points)
    (row,) = rows_of(run)
    table = operating_points_table([row], 3)
    assert "| m | covid |" in table and "| m | normal |" in table
    assert "| threshold (seeds' mean) |" in table  # QA: a mean of two thresholds no model uses, unlabelled


def test_train_time_is_timed_where_a_seed_extracted_and_priced_where_every_seed_copied_features():
    """Seed 0 read its features from the cache; seeds 1-3 copied features from another split's entries
    (seed 3 all of them): seed 1 priced at its extraction's 20 img/s (90/20 s), seed 2, too few new
    images for an extraction throughput, at its efficiency's 10 img/s (90/10 s), seed 3 without any
    throughput not at all. Once a seed extracts every image it did not read from the cache (seed 4, 7 s),
    its time is the row's."""
    probabilities, sizes = noisy(LABELS, 0.6, 0), {"split_sizes": {"train": 60, "val": 10, "test": 20}}
    common = {"training_s": 1.0, "features_from_cache": False, **sizes}
    runs = [
        fake_run("vgg19", probabilities, LABELS, seed=0, training_s=1.0, features_from_cache=True,
                 feature_extraction_s=0.01),
        fake_run("vgg19", probabilities, LABELS, seed=1, feature_extraction_s=2.0, features_reused_images=60,
                 extraction_ips=20.0, throughput_ips=10.0, **common),
        fake_run("vgg19", probabilities, LABELS, seed=2, feature_extraction_s=1.5, features_reused_images=89,
                 extraction_ips=None, throughput_ips=10.0, **common),
        fake_run("vgg19", probabilities, LABELS, seed=3, feature_extraction_s=0.02, features_reused_images=90,
                 **common),
    ]
    (row,) = group_rows(runs)["synthetic"]
    assert training_time(row) == pytest.approx((4.5 + 9.0) / 2 + 1.0)
    cold = fake_run("vgg19", probabilities, LABELS, seed=4, feature_extraction_s=7.0,
                    features_reused_images=0, extraction_ips=15.0, **common)
    (row,) = group_rows([*runs, cold])["synthetic"]
    assert training_time(row) == pytest.approx(7.0 + 1.0)


def test_a_small_validation_split_is_warned_about_on_the_leaderboard():
    """QA: 2 validation patients chose each row's epoch, temperature, thresholds and configuration."""
    probabilities = noisy(LABELS, 0.6, 0)
    few = {"split_sizes": {"train": 80, "val": 15, "test": len(LABELS)}, "split_by": "patient",
           "split_groups": {"train": 12, "val": 2, "test": 5}}
    (row,) = rows_of(fake_run("m", probabilities, LABELS, **few))
    warnings = "\n".join(small_test_warnings([row], "accuracy"))
    assert "**Few validation cases:** The validation split has 15 images of 2 patients" in warnings
    enough = {"split_sizes": {"train": 80, "val": 40, "test": len(LABELS)}}
    (row,) = rows_of(fake_run("m", probabilities, LABELS, **enough))
    assert "validation" not in "\n".join(small_test_warnings([row], "accuracy"))


def test_a_class_missing_from_a_split_is_a_leaderboard_warning():
    """QA: a class with no validation images (a grouped split of too few patients, an older image split)
    was said only in the model card: early stopping and the thresholds never saw it."""
    probabilities = noisy(LABELS, 0.6, 0)
    run = fake_run("m", probabilities, LABELS)
    counts = {"train": {c: 10 for c in CLASSES}, "val": {**{c: 5 for c in CLASSES}, CLASSES[2]: 0},
              "test": {c: 10 for c in CLASSES}}
    run.manifest["dataset"] = {"class_counts": counts}
    (row,) = rows_of(run)
    warnings = "\n".join(small_test_warnings([row], "accuracy"))
    assert (f"**A class is missing from a split:** Class '{CLASSES[2]}' has no validation images: early "
            "stopping, temperature scaling and the operating-point thresholds were chosen without it.") \
        in warnings
    complete = rows_of(fake_run("m", probabilities, LABELS))  # no manifest counts: nothing said
    assert "missing from a split" not in "\n".join(small_test_warnings(complete, "accuracy"))


def test_an_exact_interval_at_an_operating_point_counts_patients_on_a_grouped_split():
    """Review: sensitivity at the threshold, 1.0 in every resample, kept the exact interval of 12
    independent slices (low 0.735) where there are 3 patients (0.292)."""
    from benchmark.metrics.operating_points import operating_points_record

    labels = np.repeat([0, 1], 12)
    probabilities = np.where(labels[:, None] == np.arange(2), 0.8, 0.2)
    points = operating_points_record(labels, probabilities, labels, probabilities, ["covid", "normal"], 0.9)
    run = fake_run("m", probabilities, labels, classes=("covid", "normal"), operating_points=points)
    run.predictions["group"] = np.repeat([f"p{i}" for i in range(6)], 4)
    (row,) = rows_of(run)
    found = estimate(row, "sensitivity_at_target_sensitivity_covid")
    assert found.method == CLOPPER_PEARSON_FALLBACK and found.estimate == 1.0
    assert found.low == pytest.approx(0.025 ** (1 / 3))


def test_a_holm_p_just_below_alpha_is_not_printed_as_alpha_beside_its_mark():
    """QA: Holm p 0.0496 read "0.05 ✓", and ✓ means below 0.05."""
    from benchmark.report.tables import p_beside

    assert [p_beside(p, 0.05) for p in (0.0496, 0.04999, 0.0504, 0.012, 0.3)] == \
        ["0.0496", "0.04999", "0.05", "0.012", "0.3"]


def test_an_ensembles_members_sharing_a_backbone_pay_for_it_once():
    """QA: linear and kNN heads on one frozen ResNet50 were priced as two ResNet50s; a fine-tuned ResNet50
    is a network of its own (review)."""
    from benchmark.report.ensemble import costs

    cost = {"params_total": 25e6, "model_size_mb": 90.0, "latency_ms": 20.0, "throughput_ips": 100.0}
    heads = [fake_run("resnet50", noisy(LABELS, 0.3, i), LABELS, image_size=128, **cost, config_hash=mode,
                      train_mode=mode) for i, mode in enumerate(("linear", "knn", "finetune"))]
    other = fake_run("vgg19", noisy(LABELS, 0.3, 5), LABELS, image_size=128, **{**cost, "latency_ms": 30.0,
                                                                                  "throughput_ips": 50.0})
    found = costs(group_rows([*heads, other])["synthetic"])
    assert found["latency_ms"] == 70.0 and found["params_total"] == 75e6  # frozen resnet50 once, fine-tuned
    assert found["throughput_ips"] == pytest.approx(1 / (1 / 100 + 1 / 100 + 1 / 50))  # one, vgg19
