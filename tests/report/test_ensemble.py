"""The top-k ensemble on the suite's real sweep: chosen on validation, evaluated like any run, ranked."""

import json

import numpy as np
import pandas as pd

from benchmark.report.ensemble import build_ensembles
from benchmark.report.load import collect
from benchmark.report.rows import group_rows, mean_of
from tests.conftest import run_cli


def test_ensemble_averages_the_members_chosen_by_validation_loss(tiny_sweep, tmp_path):
    results = tiny_sweep.copy_to(tmp_path).root / "results"
    (run_dir,) = build_ensembles(results, k=2)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    found = group_rows(collect(results).runs)["synthetic"]
    rows = {row.label: row for row in found if row.backbone != "ensemble"}
    by_val = sorted(rows, key=lambda label: mean_of(rows[label], "best_val_loss"))
    assert metrics["members"] == by_val[:2] and metrics["backbone"] == "ensemble"
    ensemble = pd.read_csv(run_dir / "predictions.csv").set_index("file").sort_index()
    columns = [f"prob_{c}" for c in metrics["classes"]]

    def seed_mean(label: str) -> np.ndarray:
        tables = [run.predictions.set_index("file").sort_index()[columns] for run in rows[label].runs]
        return np.mean([table.to_numpy() for table in tables], axis=0)

    expected = np.mean([seed_mean(label) for label in metrics["members"]], axis=0)
    np.testing.assert_allclose(ensemble[columns].to_numpy(), expected, atol=1e-6)
    assert metrics["accuracy"] == (ensemble["true_label"] == ensemble["predicted_label"]).mean()


def test_the_report_ranks_the_ensemble_as_a_row(tiny_sweep, tmp_path):
    results = tiny_sweep.copy_to(tmp_path).root / "results"
    result = run_cli([f"results_dir={results}", "ensemble_k=2"], module="benchmark.report")
    assert result.returncode == 0, result.stderr[-2000:]
    markdown = (results / "leaderboard.md").read_text()
    assert "| ensemble top-2 |" in markdown and "1 ensemble of 2 rows (4 models)" in markdown
    assert "history.csv" not in result.stdout  # an ensemble has no training curve to miss


def test_ensemble_cli_refuses_fewer_than_two_members(tmp_path):
    result = run_cli([f"results_dir={tmp_path}", "k=1"], module="benchmark.ensemble")
    assert result.returncode == 2 and "needs at least 2 members" in result.stderr
