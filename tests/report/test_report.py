"""`python -m benchmark.report` on real run directories made once by a real tiny multirun of the benchmark."""

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from benchmark.report.after_sweep import build_leaderboard
from benchmark.report.build import build_report
from benchmark.report.load import collect
from benchmark.report.rows import Row
from tests.conftest import CONF, ROOT, run_cli

CLASSES = ("normal", "pneumonia", "tumor")
BACKBONES = ("mobilenetv2", "resnet50")
CI_CELL = re.compile(r"^\d\.\d{3} (\[\d\.\d{3}, \d\.\d{3}\]‡?|\(no CI\))$")
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
    assert all(CI_CELL.match(cell) for r in ranked for cell in (r[4], r[6], r[7])), ranked
    per_class = table_rows(markdown, "backbone")
    assert {(r[0], r[1]) for r in per_class} == {(b, c) for b in BACKBONES for c in CLASSES}
    compared = table_rows(markdown, "#1 vs")
    expected = [("macro-AUROC", "paired bootstrap")]  # one test per estimand: not DeLong's too (QA)
    assert [(r[1], r[2]) for r in compared] == expected
    assert all(re.match(r"^[+-]\d\.\d{3}$", r[3]) and re.match(r"^\[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]$", r[4])
               for r in compared), compared
    failures = section(markdown, "Failed runs")  # the sweep's real failures: inceptionv3 cannot take 32 px
    assert failures.count("| synthetic | inceptionv3 |") == 2 and "minimum of 75" in failures
    assert section(markdown, "Skipped / incomplete run directories").strip() == "none"
    links = re.findall(r"\]\((figures/[^)]+\.png)\)", markdown)
    assert len(links) == 6 and all((results / link).stat().st_size > 0 for link in links)
    assert f"leaderboard: {results / 'leaderboard.md'}" in output
    assert "tensorflow" not in output and "keras" not in output  # the report stays light and fast
    table = pd.read_csv(results / "leaderboard.csv")  # one line per row: the estimand and its interval
    assert table["rank"].tolist() == [1, 2] and set(table["n_seeds"]) == {2}
    for key in ("sensitivity", "specificity", "auroc"):
        assert {f"{key}_{c}_ci_low" for c in CLASSES} <= set(table.columns)
    assert (table["accuracy_ci_low"] <= table["accuracy"]).all() and set(table["weights_used"]) == {"random"}
    assert table["synthetic_data"].all() and set(table["split_by"]) == {"image"}  # as the header says
    runs = pd.read_csv(results / "runs.csv")  # one line per run
    assert len(runs) == 4 and sorted(runs["seed"].tolist()) == [0, 0, 1, 1]
    assert all((results / rel / "metrics.json").is_file() for rel in runs["run_dir"])


@pytest.mark.parametrize("metric", ["accuracy", "ece"])
def test_ranking_follows_the_primary_metric(swept, tmp_path, metric):
    results = copy_runs(swept, tmp_path)
    build_report(report_config(results, f"primary_metric={metric}"))
    means = pd.read_csv(results / "leaderboard.csv").set_index("row")[metric]
    sign = 1 if metric == "ece" else -1  # ECE: lower is better
    expected = sorted(means.index, key=lambda label: (sign * means[label], label))
    ranked = table_rows((results / "leaderboard.md").read_text(), "rank")
    assert [r[1] for r in ranked] == expected
    cells = [cell for r in ranked for cell in r if cell.startswith(f"{means[r[1]]:.3f}")]
    assert len(cells) >= len(ranked) and all("[" in cell for cell in cells)  # the ranked metric with its CI


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
    ranked = next((results / "runs" / "synthetic" / "resnet50").glob("seed0-*"))  # a seed of a ranked row
    lost = ranked.with_name(ranked.name.replace("seed0-", "seed7-"))
    lost.mkdir()
    record = {"backbone": "resnet50", "dataset": "synthetic", "seed": 7, "config_hash": ranked.name[6:]}
    (lost / "failed.json").write_text(json.dumps({**record, **error, "traceback": "...", "time": "now"}))

    result = run_cli([f"results_dir={results}", *FAST], module="benchmark.report")
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(
        rf"WARNING.*skipping {corrupt.relative_to(results)}: metrics.json is not valid", result.stdout
    )
    markdown = (results / "leaderboard.md").read_text()
    failures = section(markdown, "Failed runs")
    assert "densenet121" in failures and "ResourceExhaustedError: OOM allocating tensor" in failures
    assert "second line" not in failures
    assert "- failed, so not in the numbers above: resnet50 seed 7 (see *Failed runs*)" in markdown
    skipped = section(markdown, "Skipped / incomplete run directories")
    assert f"`{corrupt.relative_to(results)}`: metrics.json is not valid JSON" in skipped
    assert "seed9-killed`: incomplete" in skipped and "partial" not in markdown
    assert len(pd.read_csv(results / "runs.csv")) == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], "no complete runs under {results}/runs: run `make sweep` or `python -m benchmark` first"),
        (["primary_metric=speed"], "primary_metric=speed is not a rankable metric: use one of accuracy"),
        (["primary_metric=weighted_f1"], "primary_metric=weighted_f1 is not a rankable metric"),  # no CI
        (["primary_metrc=accuracy"], "primary_metrc is not a setting"),
        (["ensemble_k=abc"], "ensemble_k='abc' must be 0 (no ensemble) or a whole number of at least 2"),
        (["ensemble_k=2.5"], "ensemble_k=2.5 must be 0 (no ensemble) or a whole number of at least 2"),
    ],
)
def test_user_errors_are_one_line_and_exit_code_2(tmp_path, overrides, message):
    results = tmp_path / "results"
    result = run_cli([f"results_dir={results}", *overrides], module="benchmark.report")
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message.format(results=results) in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (results / "leaderboard.md").exists()
    assert not results.exists()  # a mistyped results_dir keeps no Hydra log folder


@pytest.mark.parametrize(("module", "message"), [
    ("benchmark", "error: cannot make the folder {image}/hydra/"),  # Hydra's log folder, before our checks
    ("benchmark.report", "error: no complete runs under {image}/runs"),  # which logs to the console only
])
def test_a_results_dir_that_is_a_file_is_one_line(tmp_path, module, message):
    """QA: NotADirectoryError's traceback, from Hydra making its log folder before any check of ours."""
    image = tmp_path / "scan.png"
    image.write_bytes(b"not a folder")
    result = run_cli([f"results_dir={image}"], module=module)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert message.format(image=image) in result.stderr
    if module == "benchmark":
        assert f"a file is in the way ({image}): point the setting that names it" in result.stderr
    assert image.read_bytes() == b"not a folder"


def test_a_report_on_a_folder_without_runs_writes_nothing_anywhere(tmp_path):
    """It logs to the console only: Hydra's log folder under a mistyped results_dir was all a failed report
    left behind, and removing it afterwards once removed the working directory (results_dir=.)."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    empty = tmp_path / "empty"
    empty.mkdir()
    for results_dir, cwd in ((mine, tmp_path), (".", empty)):
        result = run_cli([f"results_dir={results_dir}"], module="benchmark.report", cwd=cwd)
        assert result.returncode == 2 and "no complete runs" in result.stderr, result.stderr[-2000:]
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and not any(empty.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "mine"]


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
    assert "its 90% confidence interval" in markdown
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


def test_a_configuration_best_on_test_but_not_on_validation_is_not_the_leaderboards_row(swept, tmp_path):
    """A second configuration of mobilenetv2 with perfect test predictions and a worse validation loss:
    the leaderboard keeps the validation-best configuration; the other is listed, never ranked by test."""
    results = copy_runs(swept, tmp_path)
    for original in sorted((results / "runs" / "synthetic" / "mobilenetv2").glob("seed*")):
        lucky = original.with_name(original.name.split("-")[0] + "-10cc1e57")
        shutil.copytree(original, lucky)
        metrics = json.loads((lucky / "metrics.json").read_text())
        chosen_hash = metrics["config_hash"]
        metrics |= {"config_hash": "10cc1e57", "best_val_loss": metrics["best_val_loss"] + 1.0}
        (lucky / "metrics.json").write_text(json.dumps(metrics))
        table = pd.read_csv(lucky / "predictions.csv", dtype=str, keep_default_na=False)
        for name in CLASSES:  # every test image right with certainty: the best test score possible
            table[f"prob_{name}"] = (table["true_label"] == name).astype(float)
        table.to_csv(lucky / "predictions.csv", index=False)
    build_report(report_config(results))
    markdown = (results / "leaderboard.md").read_text()
    ranked = {r[1]: r for r in table_rows(markdown, "rank")}
    assert f"mobilenetv2 ({chosen_hash})" in ranked and "mobilenetv2 (10cc1e57)" not in ranked
    listed = section(markdown, "synthetic").split("### All configurations", 1)[1]
    configurations = table_rows(listed, "backbone")
    assert [(r[3], r[5]) for r in configurations] == [(f"`{chosen_hash}`", "✓"), ("`10cc1e57`", "")]
    assert configurations[1][6].startswith("1.000")  # its perfect test score is shown, and did not choose it
    rows = pd.read_csv(results / "leaderboard.csv")
    assert rows.loc[rows["config_hash"] == "10cc1e57", "chosen_on_validation"].tolist() == [False]


def test_an_unchanged_results_folder_is_not_reported_again(swept, tmp_path):
    results = copy_runs(swept, tmp_path)
    path = build_report(report_config(results))
    written = path.stat().st_mtime_ns
    assert build_report(report_config(results)) == path and path.stat().st_mtime_ns == written
    build_report(report_config(results, "primary_metric=accuracy"))  # another option: rebuilt
    assert path.stat().st_mtime_ns != written and "ranked by: **accuracy**" in path.read_text()
    written = path.stat().st_mtime_ns
    run = next((results / "runs" / "synthetic" / "resnet50").glob("seed*"))
    (run / "metrics.json").write_text((run / "metrics.json").read_text())  # a run re-written: rebuilt
    build_report(report_config(results, "primary_metric=accuracy"))
    assert path.stat().st_mtime_ns != written


def test_an_up_to_date_leaderboard_is_found_without_loading_the_plotting_code(reported):
    """`make sweep` on a complete sweep ends in this check: matplotlib's import was 0.7 s of its ~15 s."""
    results, _ = reported
    result = run_cli([f"results_dir={results}", *FAST], module="benchmark.report",
                     env={"PYTHONPROFILEIMPORTTIME": "1"})
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "leaderboard up to date" in output, output[-3000:]
    assert "matplotlib" not in output and "benchmark.figures" not in output


def test_the_sweeps_own_report_finds_what_make_report_wrote_up_to_date(swept, tmp_path):
    """The sweep's callback loads conf/report.yaml with Hydra's own node; that node is not an option of
    the report, so `make report` then `make sweep` on a complete sweep does not build it all again."""
    results = copy_runs(swept, tmp_path)
    path = build_report(report_config(results))
    written = path.stat().st_mtime_ns
    build_leaderboard(OmegaConf.create({"results_dir": str(results), "report": {"ensemble_k": 0}}))
    assert path.stat().st_mtime_ns == written


def test_the_header_warns_of_duplicates_left_in_the_data_not_of_dropped_ones_or_name_hints():
    from benchmark.report.document import duplicate_warnings
    from benchmark.report.load import Run

    def said(**metrics) -> str:
        return "\n".join(duplicate_warnings([Run("r", metrics, {}, pd.DataFrame(), None)]))

    left = said(cross_split_duplicates={"exact": 2, "near": 1}, cross_split_hints={"name": 0})
    assert "**Possible leakage:**" in left and "2 exact, 1 near" in left
    dropped = said(cross_split_duplicates={"exact": 0, "near": 0}, dropped_duplicates=3)
    assert "Possible leakage" not in dropped and "3 copies of images in an earlier split dropped" in dropped
    hints = said(cross_split_duplicates={"exact": 0}, cross_split_hints={"name": 42, "patient_id": 0})
    assert "Possible leakage" not in hints and "by file name or DICOM PatientID (42 name;" in hints
    assert said(cross_split_duplicates={"exact": 0}) == ""
    assert said(cross_split_duplicates={"exact": 0, "name": 42}) == ""  # a run from before the hints' key
    noisy = said(cross_split_duplicates={"exact": 0}, duplicates_with_other_labels={"exact": 2, "near": 3})
    assert "**Label noise:** 2 pair(s) of one image (exact or the same DICOM instance)" in noisy
    assert "- to check: 3 near-duplicate pair(s) carry different labels" in noisy


def test_runs_on_another_split_are_set_aside_with_the_setting_that_differs(tiny_sweep, tiny_cfg, tmp_path):
    """Validation losses on different images choose nothing fairly: a run on another split (the most recent
    one) is the current data, and the sweep's runs are set aside and named with the setting to separate."""
    from benchmark.runs.pipeline import run

    results = tiny_sweep.copy_to(tmp_path).root / "results"
    markdown = lambda: (results / "leaderboard.md").read_text()  # noqa: E731
    assert run_cli([f"results_dir={results}"], module="benchmark.report").returncode == 0
    assert "dataset settings" not in markdown()
    newest = run(tiny_cfg("dataset.split_seed=1", "seed=5"))  # another split of the same images
    assert run_cli([f"results_dir={results}"], module="benchmark.report").returncode == 0
    page = markdown()
    top = page.split("## synthetic", 1)[0]
    said = "⚠️ **4 runs of `synthetic` were made with other dataset settings** (dataset.split_seed=0 (now 1);"
    assert said in top
    assert f"fingerprint `{newest['dataset_fingerprint']}`" in top and "Give each data setup its own" in top
    assert [(r[1], r[-1]) for r in table_rows(page, "rank")] == [("mobilenetv2", "1")]
    runs = pd.read_csv(results / "runs.csv")
    assert runs[runs["status"] == "current"]["seed"].tolist() == [5]
    aside = runs[runs["status"] == "set_aside"]
    assert sorted(aside["seed"].tolist()) == [0, 0, 1, 1]
    assert set(aside["set_aside_reason"]) == {
        "other dataset settings: dataset.split_seed=0 (now 1); data fingerprint "
        f"{aside['dataset_fingerprint'].iloc[0]} (now {newest['dataset_fingerprint']})"
    }
    assert pd.read_csv(results / "leaderboard.csv")["n_seeds"].tolist() == [1]
    assert "different splits of this dataset" not in page


def with_fingerprint(run_dir: Path, fingerprint: str | None, finished: str | None = None) -> None:
    """Rewrite a run's recorded data fingerprint (None: a run from before it was recorded)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    metrics.pop("dataset_fingerprint")
    manifest["dataset"].pop("fingerprint")
    if fingerprint is not None:
        metrics["dataset_fingerprint"] = manifest["dataset"]["fingerprint"] = fingerprint
    manifest["finished"] = finished or manifest["finished"]
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "manifest.json").write_text(json.dumps(manifest))


def test_a_backbone_on_older_data_is_not_ranked_compared_or_ensembled(swept, tmp_path):
    """resnet50's runs recorded another (older) version of the data: only mobilenetv2 is ranked, nothing is
    compared with it or ensembled, and the page names the set-aside runs. A run without a fingerprint
    (made before it was recorded) still counts."""
    from benchmark.report.rows import best_seed_runs
    from benchmark.runs.layout import ensemble_dirs

    results = copy_runs(swept, tmp_path)
    older = sorted((results / "runs" / "synthetic" / "resnet50").glob("seed*"))
    for run_dir in older:
        with_fingerprint(run_dir, "0ld0ld0ld0ld0ld0", "2000-01-01T00:00:00+00:00")
    first, second = sorted((results / "runs" / "synthetic" / "mobilenetv2").glob("seed*"))
    current = json.loads((first / "metrics.json").read_text())["dataset_fingerprint"]
    with_fingerprint(second, None)
    build_report(report_config(results, "ensemble_k=2"))
    markdown = (results / "leaderboard.md").read_text()
    top = markdown.split("## synthetic", 1)[0]
    assert "⚠️ **2 runs of `synthetic` were made on another version of the data** (fingerprint " in top
    said = f"`0ld0ld0ld0ld0ld0`, classes {', '.join(CLASSES)}; the current data is fingerprint `{current}`"
    assert said in top
    assert all(f"`{run_dir.relative_to(results).as_posix()}`" in top for run_dir in older)
    assert "The same command re-runs them on the current data" in top
    assert [(r[1], r[-1]) for r in table_rows(markdown, "rank")] == [("mobilenetv2", "2")]
    assert "Only one row: nothing to compare." in markdown and not ensemble_dirs(results, "synthetic")
    assert "0ld0ld0ld0ld0ld0" not in section(markdown, "synthetic")
    runs = pd.read_csv(results / "runs.csv")  # every complete run, those set aside marked with why
    assert runs.groupby("status")["backbone"].apply(set).to_dict() == {
        "current": {"mobilenetv2"}, "set_aside": {"resnet50"}}
    aside = runs[runs["status"] == "set_aside"]
    assert sorted(aside["run_dir"]) == [run_dir.relative_to(results).as_posix() for run_dir in older]
    assert set(aside["set_aside_reason"]) == {
        f"another version of the data: data fingerprint 0ld0ld0ld0ld0ld0 (now {current})"}
    assert runs[runs["status"] == "current"]["set_aside_reason"].isna().all()
    assert set(pd.read_csv(results / "leaderboard.csv")["backbone"]) == {"mobilenetv2"}
    assert [path.parent.name for path in best_seed_runs(collect(results).runs, results)] == ["mobilenetv2"]


# Builds a report (ensemble_k=2) in a fresh process and prints how often each file under results_dir was
# opened for reading: an audit hook sees every open, and a subprocess keeps it out of the test process.
COUNT_READS = """
import collections, json, sys
from pathlib import Path
from omegaconf import OmegaConf
from benchmark.report.build import build_report

results, reads = Path(sys.argv[1]).resolve(), collections.Counter()

def count(event, args):
    path = Path(str(args[0])).resolve() if event == "open" and isinstance(args[0], str | Path) else None
    if path is not None and "r" in str(args[1] or "") and path.is_relative_to(results):
        reads[path.relative_to(results).as_posix()] += 1

cfg = OmegaConf.load("conf/report.yaml")
cfg.results_dir, cfg.ensemble_k = str(results), 2
sys.addaudithook(count)
build_report(cfg)
print(json.dumps(reads))
"""


def test_a_report_reads_each_run_directory_once(swept, tmp_path):
    """Ensembles, set-aside runs, failures made good by a study and the page itself all work from one
    reading of the runs: each run's files are opened once (the ensemble's after it is written)."""
    results = copy_runs(swept, tmp_path)
    (older, _) = sorted((results / "runs" / "synthetic" / "resnet50").glob("seed*"))
    with_fingerprint(older, "0ld0ld0ld0ld0ld0", "2000-01-01T00:00:00+00:00")  # set aside; two rows remain
    done = subprocess.run([sys.executable, "-c", COUNT_READS, str(results)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    reads = json.loads(done.stdout.strip().splitlines()[-1])
    names = ("metrics.json", "failed.json", "config.yaml", "predictions.csv", "manifest.json")
    counted = {path: n for path, n in reads.items() if path.rsplit("/", 1)[-1] in names}
    run_dirs = {path.rsplit("/", 1)[0] for path in counted}
    assert len(run_dirs) == 7  # 2 x 2 complete (1 set aside), 2 inceptionv3 failed, the new ensemble
    assert any(path.startswith("runs/synthetic/ensemble/") for path in run_dirs)
    assert sum(path.endswith("/failed.json") for path in counted) == 2
    assert sum(path.endswith("/config.yaml") for path in counted) == 2  # the set-aside and current data's
    assert counted and set(counted.values()) == {1}, counted


def write_images(folder: Path, classes: tuple[str, ...], seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in classes:
        (folder / name).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).save(folder / name / f"{i}.png")


def test_a_seed_trained_before_a_class_folder_was_renamed_is_not_pooled(tiny_cfg, tmp_path, caplog):
    """Real runs: seed 0 on classes alpha/beta/gamma, then gamma renamed and seed 1 run. The leaderboard
    ranks seed 1 alone and names seed 0 (logged once, though the ensemble reads the runs too); the same
    command then re-runs seed 0 on the current data."""
    from benchmark.runs.pipeline import run

    data, results = tmp_path / "lungs", tmp_path / "results"
    write_images(data, ("alpha", "beta", "gamma"))
    folder = ("dataset=folder", f"dataset.path={data}")
    old = run(tiny_cfg(*folder, synthetic=False))
    (data / "gamma").rename(data / "zeta")
    new = run(tiny_cfg(*folder, "seed=1", synthetic=False))
    with caplog.at_level(logging.WARNING):
        build_report(report_config(results, "ensemble_k=2"))
    assert [r.getMessage() for r in caplog.records if "not ranked" in r.getMessage()] == [
        f"1 run(s) of lungs on another version of the data (fingerprint {old['dataset_fingerprint']}, "
        f"now {new['dataset_fingerprint']}): not ranked"
    ]
    markdown = (results / "leaderboard.md").read_text()
    top = markdown.split("## lungs", 1)[0]
    (seed0,) = (results / "runs" / "lungs" / "mobilenetv2").glob("seed0-*")
    assert (
        "⚠️ **1 run of `lungs` was made on another version of the data** (fingerprint "
        f"`{old['dataset_fingerprint']}`, classes alpha, beta, gamma; the current data is fingerprint "
        f"`{new['dataset_fingerprint']}`, classes alpha, beta, zeta, that of the most recently finished run)"
    ) in top
    assert f"Set aside: `{seed0.relative_to(results).as_posix()}`." in top
    assert "(1 more on another version of the data, not ranked)" in top
    assert [(r[1], r[-1]) for r in table_rows(markdown, "rank")] == [("mobilenetv2", "1")]
    assert "- classes: alpha, beta, zeta\n" in markdown and "gamma" not in section(markdown, "lungs")
    runs = pd.read_csv(results / "runs.csv")
    assert list(zip(runs["seed"], runs["status"], strict=True)) == [(1, "current"), (0, "set_aside")]
    again = run(tiny_cfg(*folder, synthetic=False))  # the same command as seed 0's: trained again
    assert again["dataset_fingerprint"] == new["dataset_fingerprint"]
    build_report(report_config(results))
    markdown = (results / "leaderboard.md").read_text()
    assert "another version of the data" not in markdown
    assert [(r[1], r[-1]) for r in table_rows(markdown, "rank")] == [("mobilenetv2", "2")]


def test_data_changed_in_a_moved_folder_is_another_version_not_another_setting(tiny_cfg, tmp_path):
    """Real runs: seed 0 on a folder, then the folder copied elsewhere, a class renamed there and seed 1 run
    on the copy. dataset.path says where the data is, not what it is: the page says the data changed and
    that re-running brings the seed onto it, not that the setup needs a dataset.name of its own."""
    from benchmark.runs.pipeline import run

    data, moved, results = tmp_path / "disk1" / "lungs", tmp_path / "disk2" / "lungs", tmp_path / "results"
    write_images(data, ("alpha", "beta", "gamma"))
    run(tiny_cfg("dataset=folder", f"dataset.path={data}", synthetic=False))
    shutil.copytree(data, moved)
    (moved / "gamma").rename(moved / "zeta")
    run(tiny_cfg("dataset=folder", f"dataset.path={moved}", "seed=1", synthetic=False))
    build_report(report_config(results))
    top = (results / "leaderboard.md").read_text().split("## lungs", 1)[0]
    assert "⚠️ **1 run of `lungs` was made on another version of the data** (fingerprint " in top
    assert "The same command re-runs it on the current data" in top
    assert "other dataset settings" not in top and "dataset.path" not in top


def test_an_ensemble_on_another_split_is_never_said_to_be_re_run_and_is_removed_by_the_next_build(
    tiny_sweep, tiny_cfg, tmp_path
):
    """Real runs: the sweep's ensemble, then a run on another split, now the current data with one row (no
    ensemble of it). The old ensemble is set aside with its members' settings (its own config.yaml names
    none) and a remedy that holds for an ensemble; building ensembles removes it."""
    from benchmark.report.ensemble import build_ensembles
    from benchmark.runs.pipeline import run

    results = tiny_sweep.copy_to(tmp_path).root / "results"
    (ensemble,) = build_ensembles(results, k=2)
    run(tiny_cfg("dataset.split_seed=1", "seed=5"))
    build_report(report_config(results))  # ensemble_k=0: no ensemble is built, the old one is set aside
    top = (results / "leaderboard.md").read_text().split("## synthetic", 1)[0]
    said = "⚠️ **5 runs of `synthetic` were made with other dataset settings** (dataset.split_seed=0 (now 1);"
    assert said in top and f"`{ensemble.relative_to(results).as_posix()}`" in top
    assert "An ensemble is not re-run: building ensembles" in top and "re-runs" not in top
    runs = pd.read_csv(results / "runs.csv")  # kept while no ensemble is asked for; listed as set aside
    assert runs.set_index("run_dir").loc[ensemble.relative_to(results).as_posix(), "status"] == "set_aside"
    build_report(report_config(results, "ensemble_k=2"))  # one current row: no new ensemble
    top = (results / "leaderboard.md").read_text().split("## synthetic", 1)[0]
    assert not ensemble.exists() and "/ensemble/" not in top and "An ensemble is not re-run" not in top
    assert "⚠️ **4 runs of `synthetic` were made with other dataset settings** (dataset.split_seed=0" in top
