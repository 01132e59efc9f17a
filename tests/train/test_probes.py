"""The kNN and linear probes: scikit-learn on the cached features, saved as a Keras head that reproduces
scikit-learn's probabilities, their own rows in the leaderboard, and predict working on them."""

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from sklearn.linear_model import LogisticRegression

from benchmark.report.load import collect
from benchmark.report.rows import best_seed_runs
from benchmark.runs.identity import at_probe_defaults, resolve
from benchmark.train.head import FOLD_TOLERANCE, head_on_features, scale_of
from benchmark.train.probes import logistic_head
from tests.conftest import CONF, compose_config, run_cli, tiny_overrides


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_regression_folds_into_one_dense_layer_exactly(n_classes: int):
    rng = np.random.default_rng(n_classes)
    x = rng.normal(50.0, 3.0, (90, 16)).astype(np.float32)  # far from zero, like pooled features
    y = np.arange(90) % n_classes
    x[:, 0] += 2.0 * y  # one informative feature
    mean, std = scale_of(x)
    model = LogisticRegression(C=1.0, max_iter=2000).fit((x - mean) / std, y)
    head = head_on_features(16, [logistic_head(model, mean, std, n_classes)])
    expected = model.predict_proba((x - mean) / std)
    np.testing.assert_allclose(head.predict(x, verbose=0), expected, atol=FOLD_TOLERANCE)


def test_a_class_missing_from_train_gets_probability_zero_in_both():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = np.arange(40) % 2  # classes 0 and 1 of three
    mean, std = scale_of(x)
    model = LogisticRegression(max_iter=500).fit((x - mean) / std, y)
    probabilities = head_on_features(4, [logistic_head(model, mean, std, 3)]).predict(x, verbose=0)
    assert probabilities[:, 2].max() == 0.0
    np.testing.assert_allclose(probabilities[:, :2], model.predict_proba((x - mean) / std), atol=1e-5)


def test_a_regime_sweep_gives_one_row_per_regime_and_predict_works_on_a_probe(tmp_path: Path):
    sweep = run_cli(["--multirun", "train=knn,linear", "backbone=mobilenetv2", "seed=0",
                     *tiny_overrides(tmp_path)], timeout=600)
    assert sweep.returncode == 0, (sweep.stdout + sweep.stderr)[-3000:]
    runs = {json.loads(p.read_text())["train_mode"]: p.parent
            for p in (tmp_path / "results" / "runs").glob("*/*/*/metrics.json")}
    assert set(runs) == {"knn", "linear"}
    cached = []
    for run_dir in runs.values():
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["head_parity_max_difference"] <= FOLD_TOLERANCE
        assert (run_dir / "head.keras").is_file() and not (run_dir / "model.keras").exists()
        cached.append(metrics["features_from_cache"])
    assert sorted(cached) == [False, True]  # the second regime read the first one's features
    assert json.loads((runs["knn"] / "metrics.json").read_text())["knn_k"] == 11
    assert len(pd.read_csv(runs["linear"] / "history.csv")) == 7  # one line per C of the grid
    linear = json.loads((runs["linear"] / "metrics.json").read_text())
    assert linear["settings_fitted"] == 7 and "epochs_run" not in linear  # QA: the epochs column read 7

    frame = pd.read_csv(tmp_path / "results" / "leaderboard.csv")
    chosen = frame[frame["chosen_on_validation"]]
    assert sorted(chosen["regime"]) == ["knn", "linear"]  # separate rows, not one chosen over the other
    markdown = (tmp_path / "results" / "leaderboard.md").read_text()
    assert "### Regimes" in markdown and "| knn |" in markdown
    ranked = [line.split(" | ") for line in markdown.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert sorted(cells[2] for cells in ranked) == ["knn", "linear"]
    assert all(cells[-2] == "—" for cells in ranked)  # the epochs column, before the seeds: none
    figures = tmp_path / "results" / "figures"
    assert "](figures/synthetic_regimes.png)" in markdown and is_png(figures / "synthetic_regimes.png")
    assert not (figures / "synthetic_input_sizes.png").exists()  # one size: nothing to compare

    data = next((tmp_path / "data").glob("synthetic-*"))
    expected = pd.read_csv(runs["knn"] / "predictions.csv")
    result = run_cli([f"run={runs['knn']}", f"input={data}", "format=csv"], module="benchmark.predict")
    assert result.returncode == 0, result.stderr[-2000:]
    got = pd.read_csv(io.StringIO(result.stdout))
    got["file"] = got["file"].map(lambda f: str(Path(f).relative_to(data)))
    merged = expected.merge(got, on="file", suffixes=("", "_new"))
    assert len(merged) == len(expected)
    columns = [c for c in expected.columns if c.startswith("prob_")]
    np.testing.assert_allclose(merged[columns].to_numpy(), merged[[f"{c}_new" for c in columns]].to_numpy(),
                               atol=1e-4)

    # QA: Grad-CAM's load of the vote layer was a traceback, from benchmark.explain and at a sweep's end
    explained = run_cli([f"run={runs['knn']}"], module="benchmark.explain")
    assert explained.returncode == 2 and "Traceback" not in explained.stderr, explained.stderr[-2000:]
    assert "is train=knn: Grad-CAM does not apply" in explained.stderr
    results = tmp_path / "results"
    assert best_seed_runs(collect(results).runs, results) == [runs["linear"]]  # the sweep's maps: no knn

    # settings knn does not read: the same run, skipped as complete, the user told (it had trained a second,
    # identical knn row)
    again = run_cli(["train=knn", "backbone=mobilenetv2", "seed=0", *tiny_overrides(tmp_path), "train.lr=0.1",
                     "head.units=64"])
    assert again.returncode == 0, again.stderr[-2000:]
    (told,) = [line for line in again.stdout.splitlines() if "train=knn does not read" in line]
    assert "head.units=64, train.lr=0.1" in told and "ignored" in told
    assert len(list((tmp_path / "results" / "runs").glob("*/*/*/metrics.json"))) == 2


@pytest.mark.parametrize(("mode", "unread", "read"), [
    ("knn", ["train.lr=0.1", "train.step_size=2", "head.units=64", "head.standardize=false"], "train.k=5"),
    ("linear", ["train.patience=9", "head.dropout=0.1"], "train.class_weight=balanced"),
])
def test_a_probe_run_is_the_same_whatever_the_settings_it_does_not_read(mode, unread, read, tmp_path: Path):
    def identity(*extra: str) -> str:
        return resolve(compose_config(tmp_path, f"train={mode}", *extra)).config_hash

    assert identity(*unread) == identity()
    assert identity(read) != identity()
    given, default = (compose_config(tmp_path, f"train={mode}", *extra) for extra in (unread, ()))
    for cfg in (given, default):  # what the run records is what its hash says (review)
        at_probe_defaults(cfg)
    assert OmegaConf.to_container(given) == OmegaConf.to_container(default) and given.train.lr == 1e-3
    assert resolve(compose_config(tmp_path, "train=frozen", "train.lr=0.1")).config_hash != resolve(
        compose_config(tmp_path, "train=frozen")).config_hash  # frozen reads them


def test_runs_made_with_the_default_settings_keep_their_directories():
    """The hashes of every regime's default run, as the code before probes' unread settings were hashed at
    their defaults gave them: finished runs are found, not trained again."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        found = {mode: resolve(compose(config_name="config", overrides=[f"train={mode}"])).config_hash
                 for mode in ("knn", "linear", "frozen", "finetune")}
    assert found == {"knn": "5397906c", "linear": "622d5cbc", "frozen": "069beb46", "finetune": "721d3ddf"}


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_a_size_sweep_gives_one_row_per_size_and_a_metric_and_cost_figure(tmp_path: Path):
    sweep = run_cli(["--multirun", "train=knn", "backbone=mobilenetv2", "seed=0", *tiny_overrides(tmp_path),
                     "image_size=32,48"], timeout=600)
    assert sweep.returncode == 0, (sweep.stdout + sweep.stderr)[-3000:]
    frame = pd.read_csv(tmp_path / "results" / "leaderboard.csv")
    assert sorted(frame[frame["chosen_on_validation"]]["image_size"]) == [32, 48]
    markdown = (tmp_path / "results" / "leaderboard.md").read_text()
    assert "### Input sizes" in markdown and "| 32 px | 48 px |" in markdown
    figures = tmp_path / "results" / "figures"
    assert "](figures/synthetic_input_sizes.png)" in markdown
    assert is_png(figures / "synthetic_input_sizes.png")
    assert not (figures / "synthetic_regimes.png").exists()


def test_every_run_has_a_model_card_that_states_its_limits(tmp_path: Path):
    from benchmark.runs.pipeline import run

    metrics = run(compose_config(tmp_path, "train=linear"))
    (card_path,) = (tmp_path / "results" / "runs").glob("*/*/*/MODEL_CARD.md")
    card = card_path.read_text()
    assert "Research only" in card and "`linear`" in card
    assert f"| accuracy | {metrics['accuracy']:.3f}" in card
    assert "synthetic" in card and "not ImageNet-pretrained" in card and "by image, not by patient" in card
