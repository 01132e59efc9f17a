"""The train.*, head.*, augment.*, evaluate.* and dataset choices are checked before any work: a bad one
is a BenchmarkError naming the key and the fix; every legal value, an integer learning rate included,
passes (tests/commands/test_cli.py checks the one `error:` line and exit code 2 of a real run, and so do
the CLI tests here, for a single run and for a sweep whose every cell is refused)."""

import re
from pathlib import Path

import pytest

from benchmark.errors import BenchmarkError
from benchmark.runs.settings import (
    CLASS_WEIGHTS,
    FLIP_MODES,
    OPTIMIZERS,
    SWEEP_RULES,
    check_settings,
    check_values,
    refusal,
)
from tests.conftest import run_cli, tiny_overrides


@pytest.mark.parametrize(
    "overrides",
    [
        ["train.lr=1"],  # an int is a legal learning rate: 1.0
        ["head.dropout=0", "train.patience=0", "train.min_delta=0", "train.step_size=5", "train.gamma=1"],
        ["train=finetune", "train.unfreeze=all", "train.warmup_epochs=0", "train.finetune_lr=1"],
        ["train=finetune", "train.unfreeze=0", "train.optimizer=sgd", "train.momentum=0"],
        ["train=linear", "train.c_grid=[1,10]"],
        ["train=knn", "train.k=1"],
        *(["train=finetune", f"train.optimizer={o}"] for o in OPTIMIZERS),
        *([f"train={t}", f"train.class_weight={w or 'null'}"] for t in ("frozen", "linear", "finetune")
          for w in CLASS_WEIGHTS),
        *(["train=finetune", "augment=light", f"augment.flip={f}"] for f in (*FLIP_MODES, "null", "false")),
        ["train=finetune", "augment=strong", "augment.rotation=1", "augment.zoom=0.99",
         "augment.translation=1", "augment.contrast=1"],
        ["augment=none", "augment.rotation=0", "augment.contrast=0"],
        ["logger=mlflow"],  # its default: sqlite under results_dir
        ["logger=mlflow", "logger.tracking_uri=postgresql+psycopg2://lab@db/mlflow", "logger.artifacts=false",
         "logger.experiment=lung-ct"],
        ["logger=mlflow", "logger.tracking_uri=/shared/mlruns", "logger.experiment=2024"],  # a year, an int
        ["runtime.threads=1"],
        ["seed=4294967295", "backbone.init_seed=0", "backbone.bn_images=1", "explain.n_images=0"],
    ],
)
def test_legal_settings_pass(tiny_cfg, overrides):
    check_settings(tiny_cfg(*overrides))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.max_epochs=0"],
         "train.max_epochs=0 must be a whole number of at least 1: e.g. train.max_epochs=30"),
        (["train.batch_size=0"], "train.batch_size=0 must be a whole number of at least 1"),
        (["train.batch_size=8.5"], "train.batch_size=8.5 must be a whole number"),
        (["train.patience=-1"], "train.patience=-1 must be a whole number of at least 0"),
        (["head.units=0"], "head.units=0 must be a whole number of at least 1"),
        (["train.lr=abc"], "train.lr='abc' must be a positive number: e.g. train.lr=1e-3"),
        # QA: every cell trained, wrote its failed.json; numpy's traceback after the extraction
        (["seed=abc"], "seed='abc' must be a whole number from 0 to 4294967295: e.g. seed=0"),
        (["train.lr=-0.001"], "train.lr=-0.001 must be a positive number"),
        (["train.lr=null"], "train.lr=null must be a positive number"),
        (["train.lr=nan"], "train.lr=nan must be a positive number"),
        (["train.lr=true"], "train.lr=True must be a positive number"),
        (["head.dropout=1.5"], "head.dropout=1.5 must be a fraction from 0 up to (not including) 1"),
        (["head.dropout=1"], "head.dropout=1 must be a fraction"),
        (["train.momentum=2"], "train.momentum=2 must be a number from 0 to 1"),
        (["train.min_delta=-0.1"], "train.min_delta=-0.1 must be a number of at least 0"),
        (["train.step_size=0"], "train.step_size=0 must be null (a constant learning rate) or"),
        (["train.gamma=0"], "train.gamma=0 must be a positive number"),
        (["train=finetune", "train.finetune_lr=0"], "train.finetune_lr=0 must be a positive number"),
        (["train=finetune", "train.warmup_epochs=-1"], "train.warmup_epochs=-1 must be a whole number"),
        (["train=finetune", "train.unfreeze=-3"],
         "train.unfreeze=-3 must be a whole number of at least 0 or all"),
        (["train=finetune", "train.unfreeze=some"], "train.unfreeze='some' must be"),
        (["train=linear", "train.c_grid=[]"], "train.c_grid=[] must be a list of positive numbers"),
        (["train=linear", "train.c_grid=[1,-1]"], "train.c_grid=[1, -1] must be a list of positive numbers"),
        (["train=linear", "train.max_iter=0"], "train.max_iter=0 must be a whole number of at least 1"),
        (["train=knn", "train.k=0"], "train.k=0 must be a whole number of at least 1"),
        (["train.optimizer=adamm"],
         "train.optimizer='adamm' must be one of adam | sgd: e.g. train.optimizer=adam"),
        (["train=finetune", "train.optimizer=null"], "train.optimizer=null must be one of adam | sgd"),
        (["train=linear", "train.class_weight=balance"],
         "train.class_weight='balance' must be one of null | balanced: e.g. train.class_weight=balanced"),
        (["train=finetune", "train.class_weight=true"], "train.class_weight=True must be one of null |"),
        (["train=finetune", "augment=light", "augment.flip=diagonal"],
         "augment.flip='diagonal' must be one of null | horizontal | vertical | horizontal_and_vertical: "
         "e.g. augment.flip=horizontal"),
        (["train=finetune", "augment.flip=true"], "augment.flip=True must be one of null | horizontal"),
        (["train=finetune", "augment=light", "augment.rotation=-0.1"],
         "augment.rotation=-0.1 must be a number from 0 to 1: e.g. augment.rotation=0.03"),
        (["train=finetune", "augment=light", "augment.zoom=1"],
         "augment.zoom=1 must be a number from 0 up to (not including) 1"),
        (["train=finetune", "augment=strong", "augment.translation=1.5"],
         "augment.translation=1.5 must be a number from 0 to 1"),
        (["train=finetune", "augment=light", "augment.contrast=abc"],
         "augment.contrast='abc' must be a number from 0 to 1"),
        (["evaluate.n_bootstrap=0"], "evaluate.n_bootstrap=0 must be a whole number of at least 1"),
        (["evaluate.ci_level=95"], "evaluate.ci_level=95 must be a number between 0 and 1: e.g."),
        (["evaluate.ece_bins=0"], "evaluate.ece_bins=0 must be a whole number of at least 1"),
        (["evaluate.target_sensitivity=0"], "evaluate.target_sensitivity=0 must be a number above 0"),
        (["evaluate.bootstrap_seed=-1"], "evaluate.bootstrap_seed=-1 must be a whole number of at least 0"),
        (["backbone.weights_fallback=bogus"],  # checked with random weights too: it would hash a new run
         "backbone.weights_fallback='bogus' must be one of random | error"),
        # QA: MLflow refused the scheme after the run had trained; bool("maybe") uploaded the artifacts
        (["logger=mlflow", "logger.tracking_uri=foo://bar"],
         "logger.tracking_uri='foo://bar' must be a path or a URI MLflow stores runs at (file:, sqlite:"),
        (["logger=mlflow", "logger.artifacts=maybe"], "logger.artifacts='maybe' must be true or false"),
        (["logger=mlflow", "logger.experiment=[a,b]"], "logger.experiment=['a', 'b'] must be null or a name"),
        # QA: TensorFlow aborted the whole sweep on -3 (exit 134, its workers orphaned), a traceback on abc
        (["runtime.threads=-3"], "runtime.threads=-3 must be auto or a whole number of at least 1: e.g."),
        (["runtime.threads=abc"], "runtime.threads='abc' must be auto or a whole number of at least 1"),
        (["runtime.onnx_min_workload=-1"], "runtime.onnx_min_workload=-1 must be a whole number of at least"),
        # QA: numpy's or Keras's traceback once the features were extracted; n_images after the training
        (["seed=-1"], "seed=-1 must be a whole number from 0 to 4294967295: e.g. seed=0"),
        (["backbone.init_seed=1.5"], "backbone.init_seed=1.5 must be a whole number from 0"),
        (["backbone.bn_images=0"], "backbone.bn_images=0 must be a whole number of at least 1"),
        (["explain.n_images=-1"], "explain.n_images=-1 must be a whole number of at least 0"),
        (["dataset.split_seed=abc"], "dataset.split_seed='abc' must be a whole number from 0"),
        (["dataset=folder", "dataset.path=/data/ct", "dataset.val_fraction=1.5"],
         "dataset.val_fraction=1.5 must be a number between 0 and 1"),
    ],
)
def test_a_bad_setting_names_its_key_value_and_fix(tiny_cfg, overrides, message):
    folder = "dataset=folder" in overrides
    with pytest.raises(BenchmarkError) as raised:
        check_settings(tiny_cfg(*overrides, synthetic=not folder))
    assert str(raised.value).startswith(message), raised.value


def test_a_sweeps_own_settings_are_its_rules_not_a_runs(tiny_cfg):
    """report.ensemble_k is read by a multirun's leaderboard only: a single run is not refused for it."""
    cfg = tiny_cfg("report.ensemble_k=1")
    check_settings(cfg)
    with pytest.raises(BenchmarkError, match=r"report.ensemble_k=1 must be 0 \(no ensemble\) or a whole"):
        check_settings(cfg, SWEEP_RULES)


def test_an_integer_learning_rate_and_momentum_reach_keras_as_floats(tiny_cfg):
    """Keras refuses learning_rate=1 and momentum=0 as ints."""
    from benchmark.train.shared import callbacks, optimizer

    cfg = tiny_cfg("train.optimizer=sgd", "train.momentum=0", "train.lr=1", "train.step_size=1",
                   "train.gamma=1")
    made = optimizer(cfg.train, cfg.train.lr)
    assert float(made.learning_rate) == 1.0
    schedule = callbacks(cfg.train, cfg.train.lr)[0][0].schedule
    assert isinstance(schedule(3), float) and schedule(3) == 1.0


@pytest.mark.parametrize(
    "overrides",
    [["train=finetune", "augment=light", "augment.flip=diagonal"],
     ["train=linear", "train.class_weight=balance"],
     ["train.optimizer=adamm"]],
)
def test_a_bad_choice_stops_the_cli_before_any_work(tmp_path: Path, overrides):
    """These ran (the flip did nothing) or failed only after the features were extracted or the
    backbone recalibrated: now one `error:` line, exit code 2 and nothing written."""
    result = run_cli(tiny_overrides(tmp_path, *overrides))
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    key = overrides[-1].split("=")[0]
    assert len(errors) == 1 and errors[0].startswith(f"error: {key}=") and f"e.g. {key}=" in errors[0]
    assert "Traceback" not in result.stderr
    assert not any((tmp_path / name).exists() for name in ("results/runs", "data", "cache"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dataset.window=foo"], "dataset.window=foo is not known: use one of auto, header"),
        (["dataset.on_bad_image=errr"], "dataset.on_bad_image='errr' is unknown: use one of skip, error"),
        (["image_size=16"], "image_size=16 is below mobilenetv2's minimum of 32"),
        (["evaluate.n_bootstrap=0"], "evaluate.n_bootstrap=0 must be"),
    ],
)
def test_a_run_and_each_sweep_cell_are_checked_before_any_work(tiny_cfg, overrides, message):
    """QA: these were refused only after TensorFlow's import (n_bootstrap=0 once the run had trained)."""
    with pytest.raises(BenchmarkError, match=re.escape(message)):
        check_values(tiny_cfg(*overrides))
    assert refusal(tiny_cfg(*overrides)) is not None and refusal(tiny_cfg()) is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.lr=abc"], "train.lr='abc' must be a positive number: e.g. train.lr=1e-3"),
        # QA: every cell trained, wrote its failed.json; numpy's traceback after the extraction
        (["seed=abc"], "seed='abc' must be a whole number from 0 to 4294967295: e.g. seed=0"),
        # QA: every cell trained, then the sweep's leaderboard failed and the sweep exited 0
        (["report.ensemble_k=abc"], "report.ensemble_k='abc' must be 0 (no ensemble) or a whole number of at "
                                    "least 2: e.g. report.ensemble_k=3"),
        # review: checked before each batch, not only where the batch is the whole sweep
        (["report.ensemble_k=abc", "hydra.sweeper.max_batch_size=1"], "report.ensemble_k='abc' must be 0"),
        # QA: joblib's traceback after "sweep: 2 cells, 1 at a time"
        (["hydra/launcher=workers", "hydra.launcher.n_jobs=0"],
         "hydra.launcher.n_jobs=0 must be a whole number other than 0 (-1: one cell per core)"),
        # QA: the launcher's own check, inside Hydra's "Error in call to target '...': ValueError(...)"
        (["hydra/launcher=slurm_local", "hydra.launcher.array_parallelism=-1"],
         "hydra.launcher.array_parallelism=-1: use a whole number, 1 or more (cells at once on this "),
    ],
)
def test_a_sweep_whose_every_cell_is_refused_stops_before_the_first(tmp_path: Path, overrides, message):
    """QA: each cell failed at its turn (after TensorFlow's import) and the sweep exited 0 with a failed.json
    per cell in the leaderboard; one cell refused alone still fails at its turn (tests/runs/test_sweep.py)."""
    plugins = {"workers": "hydra_joblib_launcher", "slurm_local": "hydra_submitit_launcher"}
    for launcher in (o.split("=")[1] for o in overrides if o.startswith("hydra/launcher=")):
        pytest.importorskip(f"hydra_plugins.{plugins[launcher]}")  # the cluster extra
    sweep = ["--multirun", "backbone=mobilenetv2,resnet50"]
    result = run_cli([*sweep, *tiny_overrides(tmp_path, *overrides)])
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {message}"), errors
    assert "Traceback" not in result.stderr and "cell 1/2" not in result.stdout + result.stderr
    assert not any((tmp_path / name).exists() for name in ("results/runs", "data", "cache"))


def test_a_sweep_split_into_batches_runs_the_cells_a_refused_batch_does_not_hold(tmp_path: Path):
    """With hydra.sweeper.max_batch_size the later batches are not composed yet: a batch refused as a whole
    (inceptionv3 below its minimum size) fails at its turn and the others run, as in an unsplit sweep."""
    sweep = ["--multirun", "backbone=mobilenetv2,inceptionv3", "hydra.sweeper.max_batch_size=1"]
    result = run_cli([*sweep, *tiny_overrides(tmp_path)], timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 1, log[-3000:]  # a failed cell
    assert re.search(r"sweep finished: 1/2 cells complete in \d+ s; FAILED: inceptionv3 seed=0", log)
    assert list((tmp_path / "results" / "runs" / "synthetic" / "mobilenetv2").glob("seed0-*/metrics.json"))
