"""`python -m benchmark` as a user runs it: real subprocesses, real files, real exit codes."""

import json
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from benchmark.__main__ import refuse_sweep_preset
from benchmark.errors import BenchmarkError
from tests.conftest import CONF, run_cli, tiny_overrides

RUN_FILES = {
    "config.yaml",
    "metrics.json",
    "history.csv",
    "predictions.csv",
    "classification_report.txt",
    "confusion_matrix.png",
    "curves.png",
    "manifest.json",
    "head.keras",  # a frozen run's own part of its model; the extractor is shared (results/extractors/)
}
# Make every ImageNet download fail fast and the same way, online or not: no cache, an unreachable proxy.
OFFLINE = {"HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}


def only_run_dir(results: Path) -> Path:
    (run_dir,) = (results / "runs" / "synthetic" / "mobilenetv2").iterdir()
    return run_dir


def test_one_run_end_to_end(tmp_path: Path):
    result = run_cli(tiny_overrides(tmp_path, "seed=3", "explain.n_images=4", "image_size=64"))
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "results")
    assert run_dir.name.startswith("seed3-")
    assert {p.name for p in run_dir.iterdir()} >= RUN_FILES
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_auroc", "ece"):
        assert 0.0 <= metrics[key] <= 1.0, key
    for key in ("accuracy", "macro_f1", "macro_auroc"):
        assert metrics[f"{key}_ci_low"] <= metrics[key] <= metrics[f"{key}_ci_high"]
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["n_test"] == metrics["split_sizes"]["test"]
    assert set(metrics["per_class"]) == {"normal", "pneumonia", "tumor"}
    assert metrics["weights_used"] == "random" and metrics["synthetic_data"] is True
    assert metrics["params_total"] > metrics["params_trainable"] > 0
    assert metrics["latency_ms"] > 0 and metrics["throughput_ips"] > 0 and metrics["model_size_mb"] > 0
    assert metrics["gradcam_images"] == 4 and -1 <= metrics["gradcam_randomization_spearman"] <= 1
    (gradcam,) = [line for line in (result.stdout + result.stderr).splitlines() if "grad-cam (" in line]
    assert gradcam.endswith(f"-> {run_dir / 'gradcam.png'}")  # where it is, not where it was staged
    assert 0 <= metrics["accuracy_at_90_coverage"] <= 1 and len(metrics["coverage_curve"]) == 10
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "phase"]
    assert len(history) == metrics["epochs_run"]
    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert list(predictions.columns[:3]) == ["file", "true_label", "predicted_label"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["versions"]["keras"].startswith("3.")
    assert manifest["dataset"]["class_counts"]["test"] == {"normal": 3, "pneumonia": 3, "tumor": 3}


def test_offline_imagenet_falls_back_to_random_loudly_and_records_it(tmp_path: Path):
    overrides = [o for o in tiny_overrides(tmp_path) if o != "backbone.weights=null"]
    result = run_cli(overrides, env={**OFFLINE, "KERAS_HOME": str(tmp_path / "keras_home")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ImageNet weights for mobilenetv2 are UNAVAILABLE" in result.stdout + result.stderr
    run_dir = only_run_dir(tmp_path / "results")
    assert (
        json.loads((run_dir / "metrics.json").read_text())["weights_used"] == "random (imagenet unavailable)"
    )
    assert (
        json.loads((run_dir / "manifest.json").read_text())["weights_used"] == "random (imagenet unavailable)"
    )


def test_offline_imagenet_with_fallback_error_fails_before_any_work(tmp_path: Path):
    overrides = [o for o in tiny_overrides(tmp_path) if o != "backbone.weights=null"]
    result = run_cli(
        [*overrides, "backbone.weights_fallback=error"],
        env={**OFFLINE, "KERAS_HOME": str(tmp_path / "keras_home")},
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "ImageNet weights for mobilenetv2 are unavailable" in errors[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "results" / "runs").exists()


def test_a_mistyped_dataset_path_stops_before_the_weights_are_probed(tmp_path: Path):
    """Offline, the ImageNet probe would print its warning block first: the path error comes alone."""
    mistyped = tmp_path / "ct"
    result = run_cli(
        [f"results_dir={tmp_path}", f"data_dir={tmp_path}", "dataset=folder", f"dataset.path={mistyped}"],
        env={**OFFLINE, "KERAS_HOME": str(tmp_path / "keras_home")},
    )
    assert result.returncode == 2
    assert f"error: dataset.path={mistyped} is not a folder" in result.stderr
    said = result.stdout + result.stderr
    assert "UNAVAILABLE" not in said and "preparing the dataset" not in said


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dataset=folder"], "dataset.path is required"),
        (["dataset=folder", "dataset.path=/no/such/folder"], "is not a folder"),
        (["image_size=16"], "below mobilenetv2's minimum of 32"),
        (["backbone.name=resnet18"], "unknown backbone 'resnet18'"),
        (["backbone=resnet18"], "choose one of: densenet121, inceptionresnetv2"),
        (["dataset.pth=/data"], "dataset.pth is not a setting: check its spelling"),
        (["train.warmup_epochs=2"],  # QA: a regime sweep with it was refused as a misspelling
         "train.warmup_epochs is a setting of train=finetune only, not of the train this command (or a cell"),
        (["hparams_search.n_trials=3"],  # finetune's through its defaults list (- head)
         "hparams_search.n_trials is a setting of hparams_search=finetune, hparams_search=head only"),
        (["experiment.image_size=64"], "experiment.image_size is not a setting"),  # a preset's are global
        (["dataset=medmnist", "dataset.path=~/organamnist.npz"],
         "quote a value holding ~, spaces, brackets, commas or non-ASCII letters, e.g. "
         "\"dataset.path='~/organamnist.npz'\""),
        (["dataset=folder", "dataset.path=/data/daten_ü"],  # QA: the message named ~ and brackets only
         "quote a value holding ~, spaces, brackets, commas or non-ASCII letters, e.g. "
         "\"dataset.path='/data/daten_ü'\""),
        (["dataset.group_pattern=patient(\\d+)_"],  # the shell took the single quotes of the README's form
         "e.g. \"dataset.group_pattern='patient(\\d+)_'\""),
        (["/data/ct"],  # QA: a bare path got the advice to quote it
         "cannot read the override /data/ct: every argument is key=value, e.g. results_dir=/data/ct"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path: Path, overrides, message):
    result = run_cli([f"results_dir={tmp_path}", f"data_dir={tmp_path}", *overrides])
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def imported(stderr: str) -> set[str]:
    """The modules PYTHONPROFILEIMPORTTIME=1 says the process imported, at any depth."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize(
    ("preset", "message"),
    [
        ("experiment=bormane2024_all_backbones",
         "experiment=bormane2024_all_backbones sweeps backbone=glob(*): add --multirun "
         "(python -m benchmark --multirun experiment=bormane2024_all_backbones"),
        ("+sweep=all_backbones",
         "sweep=all_backbones sweeps seed=0,1,2 backbone=glob(*): add --multirun "
         "(python -m benchmark --multirun +sweep=all_backbones"),
    ],
)
def test_a_sweep_preset_without_multirun_stops_before_tensorflow(tmp_path: Path, preset: str, message: str):
    """Not one run of the default backbone that reads as the preset's whole sweep."""
    result = run_cli([preset, *tiny_overrides(tmp_path)], env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {message}"), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "json" in imported(result.stderr) and "tensorflow" not in imported(result.stderr)
    assert not (tmp_path / "results" / "runs").exists() and not (tmp_path / "data").exists()


def test_a_missing_weights_file_stops_before_tensorflow(tmp_path: Path):
    """A typo in backbone.weights costs the interpreter's start-up, not TensorFlow's and its log lines."""
    missing = tmp_path / "models" / "resnet50.weights.h5"
    result = run_cli([*tiny_overrides(tmp_path), f"backbone.weights={missing}"],
                     env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: backbone.weights={missing} does not exist: pass imagenet, null, or the path "
                      "of a .weights.h5 file (Keras 3) or a no-top .h5 model (Keras 2, e.g. RadImageNet)"]
    assert "json" in imported(result.stderr) and "tensorflow" not in imported(result.stderr)
    assert not (tmp_path / "results" / "runs").exists() and not (tmp_path / "data").exists()


def test_debug_true_shows_the_traceback_of_a_sweep_preset_without_multirun(tmp_path: Path):
    """debug=True as typed (Hydra reads it as the boolean), not only the literal debug=true."""
    result = run_cli(["+sweep=all_backbones", "debug=True", *tiny_overrides(tmp_path)])
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" in result.stderr and "BenchmarkError: sweep=all_backbones sweeps" in result.stderr
    assert not any(line.startswith("error:") for line in result.stderr.splitlines())


def hydra_config(tmp_path: Path, *overrides: str) -> DictConfig:
    """The hydra node a run of these overrides gets (HydraConfig.get() inside it)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        composed = compose("config", overrides=tiny_overrides(tmp_path, *overrides), return_hydra_config=True)
    return composed.hydra


def test_a_swept_plus_key_typed_on_the_command_line_is_not_refused(tmp_path: Path):
    """A preset may sweep a key the config lacks (`+key: a,b`); typed once, the multirun is this one run."""
    hydra = hydra_config(tmp_path, "+sweep=all_backbones", "seed=0", "backbone=resnet50")
    with open_dict(hydra):
        hydra.sweeper.params["+train.label_smoothing"] = "0,0.1"
        hydra.overrides.task.append("+train.label_smoothing=0.1")
    refuse_sweep_preset(hydra)
    with open_dict(hydra):
        hydra.overrides.task.pop()
    with pytest.raises(BenchmarkError, match=r"^sweep=all_backbones sweeps train.label_smoothing=0,0.1: add"):
        refuse_sweep_preset(hydra)


def test_a_sweeper_without_params_is_no_sweep_preset(tmp_path: Path):
    hydra = hydra_config(tmp_path)
    with open_dict(hydra):
        del hydra.sweeper["params"]
    refuse_sweep_preset(hydra)


def test_a_mistyped_dedupe_stops_before_any_image_is_decoded(tmp_path: Path):
    result = run_cli(tiny_overrides(tmp_path, "dataset.dedupe=dropp"))
    assert result.returncode == 2
    assert "error: dataset.dedupe=dropp is not one of warn | drop | error" in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    "override",
    ["train.max_epochs=0", "train.batch_size=0", "train.lr=abc", "train.lr=-1", "train.lr=-0.001",
     "head.dropout=1.5"],
)
def test_a_bad_train_or_head_number_stops_before_any_work(tmp_path: Path, override: str):
    """Keras met these only after the features were extracted (a traceback, exit code 1), or trained
    with them (a negative learning rate): now one line naming the key, before any data or model work."""
    result = run_cli(tiny_overrides(tmp_path, override))
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    key = override.split("=")[0]
    assert len(errors) == 1 and errors[0].startswith(f"error: {key}=") and f"e.g. {key}=" in errors[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "results" / "runs").exists() and not (tmp_path / "data").exists()
