"""`python -m benchmark.report` on real run directories made once by a real tiny multirun of the benchmark."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from benchmark.metrics.evaluate import Settings
from benchmark.report.build import build_report
from benchmark.report.load import Run
from benchmark.report.paired import NotComparable, p_text, paired_bootstrap, verdict
from benchmark.report.rows import Row, estimate, pareto_front, rank
from tests.conftest import CONF, run_cli

CLASSES = ("normal", "pneumonia", "tumor")
BACKBONES = ("mobilenetv2", "resnet50")
CI_CELL = re.compile(r"^\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]†?$")
FAST: list[str] = []  # the runs were evaluated with 200 resamples (conftest.TINY); the report reads that


@pytest.fixture(scope="module")
def swept(tiny_sweep, tmp_path_factory) -> Path:
    """The suite's shared real multirun (2 backbones x 2 seeds complete, inceptionv3 failed), copied."""
    return tiny_sweep.copy_to(tmp_path_factory.mktemp("report")).root / "results"


@pytest.fixture(scope="module")
def reported(swept: Path) -> tuple[Path, str]:
    """The report of the untouched sweep, run as a user would; import timing shows what it loaded."""
    result = run_cli(
        [f"results_dir={swept}", *FAST], module="benchmark.report", env={"PYTHONPROFILEIMPORTTIME": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return swept, result.stdout + result.stderr


def copy_runs(swept: Path, tmp_path: Path) -> Path:
    """A private results tree for a test that changes it (no model files: the report never reads them)."""
    results = tmp_path / "results"
    shutil.copytree(swept / "runs", results / "runs", ignore=shutil.ignore_patterns("model.keras"))
    return results


def report_config(results: Path, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="report", overrides=[f"results_dir={results}", *FAST, *overrides])


def table_rows(markdown: str, first_cell: str) -> list[list[str]]:
    """Cells of the markdown table whose header starts with `first_cell`."""
    block = markdown.split(f"\n| {first_cell} |", 1)[1].split("\n\n", 1)[0]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in block.splitlines()[2:]]


def section(markdown: str, title: str) -> str:
    return markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_cli_writes_leaderboard_csv_and_figures(reported):
    results, output = reported
    markdown = (results / "leaderboard.md").read_text()
    assert "⚠️ **Synthetic data: not medical evidence.**" in markdown
    assert "⚠️ **Not transfer learning from ImageNet.**" in markdown and "(random)" in markdown
    ranked = table_rows(markdown, "rank")
    assert [r[0] for r in ranked] == ["1", "2"] and {r[1] for r in ranked} == set(BACKBONES)
    assert all(CI_CELL.match(cell) for r in ranked for cell in (r[3], r[5], r[6])), ranked
    per_class = table_rows(markdown, "backbone")
    assert {(r[0], r[1]) for r in per_class} == {(b, c) for b in BACKBONES for c in CLASSES}
    assert re.search(
        r"\*\*Significance, #1 \S+ vs #2 \S+ on macro-AUROC:\*\* difference \(#1 − #2\) [+-]\d\.\d{3} "
        r"\(95% CI [+-]\d\.\d{3} to [+-]\d\.\d{3}\), p [=<] [\d.e-]+ .*significantly better.* "
        r"at the 5% level",
        markdown,
    )
    failures = section(markdown, "Failed runs")  # the sweep's real failures: inceptionv3 cannot take 32 px
    assert failures.count("| synthetic | inceptionv3 |") == 2 and "minimum of 75" in failures
    assert section(markdown, "Skipped / incomplete run directories").strip() == "none"
    links = re.findall(r"\]\((figures/[^)]+\.png)\)", markdown)
    assert len(links) == 6 and all((results / link).stat().st_size > 0 for link in links)
    assert f"leaderboard: {results / 'leaderboard.md'}" in output
    assert "tensorflow" not in output and "keras" not in output  # the report stays light and fast
    table = pd.read_csv(results / "leaderboard.csv")
    assert len(table) == 4 and sorted(table["seed"].tolist()) == [0, 0, 1, 1]
    for key in ("sensitivity", "specificity", "f1", "auroc"):
        assert {f"{key}_{c}" for c in CLASSES} <= set(table.columns)
    assert all((results / rel / "metrics.json").is_file() for rel in table["run_dir"])
    assert set(table["weights_used"]) == {"random"}


@pytest.mark.parametrize("metric", ["accuracy", "ece"])
def test_ranking_follows_the_primary_metric(swept, tmp_path, metric):
    results = copy_runs(swept, tmp_path)
    build_report(report_config(results, f"primary_metric={metric}"))
    means = pd.read_csv(results / "leaderboard.csv").groupby("row")[metric].mean()
    sign = 1 if metric == "ece" else -1  # ECE: lower is better
    expected = sorted(means.index, key=lambda label: (sign * means[label], label))
    ranked = table_rows((results / "leaderboard.md").read_text(), "rank")
    assert [r[1] for r in ranked] == expected


def test_broken_run_dirs_are_listed_not_fatal(swept, tmp_path):
    results = copy_runs(swept, tmp_path)
    corrupt = next((results / "runs" / "synthetic" / "mobilenetv2").glob("seed1-*"))
    (corrupt / "metrics.json").write_text("{not json")
    failed = results / "runs" / "synthetic" / "densenet121" / "seed0-0badc0de"
    failed.mkdir(parents=True)
    error = {"error_type": "ResourceExhaustedError", "error": "OOM allocating tensor\nsecond line"}
    record = {"backbone": "densenet121", "dataset": "synthetic", "seed": 0, "config_hash": "0badc0de"}
    (failed / "failed.json").write_text(json.dumps({**record, **error, "traceback": "...", "time": "now"}))
    (results / "runs" / "synthetic" / "resnet50" / "seed9-killed").mkdir()
    (results / "runs" / "synthetic" / "resnet50" / ".seed2-x.partial-123").mkdir()

    result = run_cli([f"results_dir={results}", *FAST], module="benchmark.report")
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(
        rf"WARNING.*skipping {corrupt.relative_to(results)}: metrics.json is not valid", result.stdout
    )
    markdown = (results / "leaderboard.md").read_text()
    failures = section(markdown, "Failed runs")
    assert "densenet121" in failures and "ResourceExhaustedError: OOM allocating tensor" in failures
    assert "second line" not in failures
    skipped = section(markdown, "Skipped / incomplete run directories")
    assert f"`{corrupt.relative_to(results)}`: metrics.json is not valid JSON" in skipped
    assert "seed9-killed`: incomplete" in skipped and "partial" not in markdown
    assert len(pd.read_csv(results / "leaderboard.csv")) == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], "no complete runs under {results}/runs: run `make sweep` or `python -m benchmark` first"),
        (["primary_metric=speed"], "primary_metric=speed is not a rankable metric: use one of accuracy"),
        (["primary_metrc=accuracy"], "Could not override 'primary_metrc'"),
    ],
)
def test_user_errors_are_one_line_and_exit_code_2(tmp_path, overrides, message):
    results = tmp_path / "results"
    result = run_cli([f"results_dir={results}", *overrides], module="benchmark.report")
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message.format(results=results) in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (results / "leaderboard.md").exists()


def fake_row(label: str, probabilities: np.ndarray, labels: np.ndarray, seed: int = 0, **metrics) -> Row:
    """A one-seed row from made-up test predictions, for the statistics alone."""
    table = pd.DataFrame({"file": [f"img{i:03d}.png" for i in range(len(labels))]})
    table["true_label"] = np.asarray(CLASSES)[labels]
    for k, name in enumerate(CLASSES):
        table[f"prob_{name}"] = probabilities[:, k]
    record = {"classes": list(CLASSES), "seed": seed, "weights_used": "random", **metrics}
    return Row("synthetic", label, "h", label, (Run(f"runs/{label}", record, {}, table, None),))


def test_paired_bootstrap_tells_a_real_difference_from_none():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 30)
    good = np.eye(3)[labels] * 0.8 + rng.dirichlet(np.ones(3), len(labels)) * 0.2
    noise = rng.dirichlet(np.ones(3), len(labels))
    settings = Settings(ci_level=0.95, n_bootstrap=300, bootstrap_seed=0, ece_bins=15)
    better = paired_bootstrap(fake_row("good", good, labels), fake_row("noise", noise, labels), settings)
    assert better.observed > 0.3 and better.low > 0 and better.p_value == pytest.approx(1 / 300)
    assert better.at_floor and p_text(better).startswith("p < 0.00333")  # never printed as if exact
    same = paired_bootstrap(fake_row("a", noise, labels), fake_row("b", noise, labels), settings)
    assert same.observed == 0 and same.p_value == 1.0 and p_text(same) == "p = 1"
    with pytest.raises(NotComparable, match="different test sets"):
        paired_bootstrap(fake_row("a", noise, labels), fake_row("b", noise[:-3], labels[:-3]), settings)
    # on the ranking metric, in its own direction: lower ECE is better
    good_row, noise_row = fake_row("good", good, labels), fake_row("noise", noise, labels)
    by_ece = paired_bootstrap(good_row, noise_row, settings, "ece")
    assert by_ece.metric == "ece" and "on ECE" in verdict(by_ece, 0.05)


def test_intervals_ranking_and_pareto_front():
    labels, probabilities = np.arange(3), np.eye(3)
    runs = [
        fake_row("m", probabilities, labels, seed=s, accuracy=a).runs[0]
        for s, a in enumerate((0.6, 0.7, 0.8))
    ]
    three = Row("synthetic", "m", "h", "m", tuple(runs))
    found = estimate(three, "accuracy", 0.95)
    assert found.source == "seeds" and found.mean == pytest.approx(0.7)
    assert found.high - found.mean == pytest.approx(4.302653 * 0.1 / np.sqrt(3), rel=1e-5)  # t(0.975, 2)
    single = fake_row("s", probabilities, labels, accuracy=0.5, accuracy_ci_low=0.4, accuracy_ci_high=0.6)
    found = estimate(single, "accuracy", 0.95)
    assert (found.mean, found.low, found.high, found.source) == (0.5, 0.4, 0.6, "bootstrap")
    low = fake_row("low", probabilities, labels, accuracy=0.9, ece=0.3)
    high = fake_row("high", probabilities, labels, accuracy=0.8, ece=0.1)
    assert [r.label for r in rank([high, low], "accuracy")] == ["low", "high"]
    assert [r.label for r in rank([low, high], "ece")] == ["high", "low"]  # lower ECE is better
    latency, accuracy = np.array([10.0, 20.0, 30.0, 15.0]), np.array([0.7, 0.9, 0.8, 0.6])
    assert pareto_front(latency, accuracy).tolist() == [True, True, False, False]


def set_evaluation(results: Path, **changes) -> None:
    """Rewrite the recorded evaluation settings of every run (or, with `only`, of one run)."""
    only = changes.pop("only", None)
    for path in results.glob("runs/*/*/*/metrics.json"):
        if only is None or only in str(path):
            metrics = json.loads(path.read_text())
            metrics["evaluation"] |= changes
            path.write_text(json.dumps(metrics))


def test_intervals_are_labelled_with_the_level_the_runs_used(swept, tmp_path):
    """Runs evaluated at 90%: every label says 90%, whatever the report would have chosen itself."""
    results = copy_runs(swept, tmp_path)
    set_evaluation(results, ci_level=0.9)
    build_report(report_config(results))
    markdown = (results / "leaderboard.md").read_text()
    assert "the 90% confidence interval" in markdown and "(90% CI " in markdown
    assert "95%" not in markdown


def test_runs_evaluated_differently_are_not_pooled(swept, tmp_path):
    results = copy_runs(swept, tmp_path)
    set_evaluation(results, n_bootstrap=50, only="resnet50")
    result = run_cli([f"results_dir={results}"], module="benchmark.report")
    assert result.returncode == 2 and "evaluated with different settings" in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1
    assert not (results / "leaderboard.md").exists()


def test_reliability_diagram_uses_the_tables_ece_bins(swept):
    """The pooled ECE in a one-seed row's reliability panel is the ECE of its metrics.json."""
    from benchmark.figures.canvas import plt
    from benchmark.figures.panels import reliability_panel
    from benchmark.metrics.evaluate import Settings
    from benchmark.report.load import collect
    from benchmark.report.rows import group_rows

    runs = collect(swept).runs
    row = next(r for r in group_rows(runs)["synthetic"] if r.backbone == "mobilenetv2")
    one_seed = Row(row.dataset, row.backbone, row.config_hash, row.label, row.runs[:1])
    fig, ax = plt.subplots()
    reliability_panel(ax, one_seed, Settings.of_run(one_seed.runs[0].metrics))
    plt.close(fig)
    shown = float(re.search(r"pooled ECE (\d\.\d{3})", ax.get_title()).group(1))
    assert shown == pytest.approx(one_seed.runs[0].metrics["ece"], abs=5e-4)


def test_imagenet_and_random_seeds_of_one_backbone_are_two_rows():
    """A partly offline sweep: seed 0 got ImageNet weights, seed 1 fell back to random init."""
    from benchmark.report.rows import group_rows

    labels, probabilities = np.arange(3), np.eye(3)
    runs = []
    for seed, weights in ((0, "imagenet"), (1, "random (imagenet unavailable)")):
        run = fake_row("resnet50", probabilities, labels, seed=seed).runs[0]
        metrics = {**run.metrics, "dataset": "synthetic", "backbone": "resnet50", "config_hash": "h",
                   "weights_used": weights}
        runs.append(Run(run.rel, metrics, {}, run.predictions, None))
    rows = group_rows(runs)["synthetic"]
    expected = ["resnet50 (imagenet)", "resnet50 (random (imagenet unavailable))"]
    assert sorted(row.label for row in rows) == expected
    assert all(len(row.runs) == 1 for row in rows)
