"""The seeds, train.*, head.*, augment.*, evaluate.*, explain.n_images, runtime.*, backbone.* (the fallback,
the BatchNorm images), dataset.val_fraction and logger.* settings of a run, and a sweep's
hydra.launcher.n_jobs and report.ensemble_k, checked before any work (no TensorFlow
imported).

Keras meets these values only after the data is loaded and the features are extracted, and then fails
with a traceback of its own (train.max_epochs=0: "need at least one array to stack"; train.batch_size=0:
a division by zero; head.dropout=1.5, train.lr=abc; train.class_weight=balance in scikit-learn), refuses
one late (train.optimizer=adamm, after decoding and BatchNorm recalibration), trains on one that makes no
sense (a negative learning rate climbs the loss) or ignores it (Keras's RandomFlip("diagonal") flips
nothing; a negative augment factor turns the transformation off); evaluate.n_bootstrap=0 failed only
once the run had trained. Checked here, a bad value is one `error:` line naming the key and the fix,
before anything is computed or written; `check_run` adds the data, weights and input size, for a single
run and for each cell of a sweep before its first.
"""

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from backbones.identity import FALLBACKS
from benchmark.errors import BenchmarkError

if TYPE_CHECKING:
    from benchmark.runs.identity import RunIdentity


def number(value: Any) -> bool:
    """A finite int or float (an int is a legal rate: train.lr=1 is 1.0); a bool is not a number here."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def whole(value: Any, least: int) -> bool:
    """An int of at least `least` (a float such as 3.0 is not a count, nor is True)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def count(least: int) -> tuple[Callable[[Any], bool], str]:
    """A rule and its wording for a whole number of at least `least`."""
    return lambda v: whole(v, least), f"a whole number of at least {least}"


def one_of(*choices: str | None) -> tuple[Callable[[Any], bool], str]:
    """A rule and its wording for one of `choices` (None is written null)."""
    return lambda v: any(v is c if c is None else v == c for c in choices), "one of " + " | ".join(
        "null" if c is None else c for c in choices)


def fraction(most: float, inclusive: bool = True) -> tuple[Callable[[Any], bool], str]:
    """A rule and its wording for a number from 0 to `most` (0 turns the transformation off)."""
    if inclusive:
        return lambda v: number(v) and 0 <= v <= most, f"a number from 0 to {most:g}"
    return lambda v: number(v) and 0 <= v < most, f"a number from 0 up to (not including) {most:g}"


OPTIMIZERS = ("adam", "sgd")  # train.optimizer (benchmark/train/shared.py builds them)
CLASS_WEIGHTS = (None, "balanced")  # train.class_weight: none, or inverse class frequency
FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")  # Keras's RandomFlip modes
ABSENT = object()
Rule = tuple[Callable[[Any], bool], str, str]  # valid(value), what it must be, an example
POSITIVE = (lambda v: number(v) and v > 0, "a positive number")
# MLflow's tracking stores (a database's driver may follow a +: postgresql+psycopg2); "" is a local path
TRACKING_SCHEMES = ("", "file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")


def tracking_uri(value: Any) -> bool:
    """A path or a URI of one of MLflow's stores, or of a store a plugin registers (azureml://)."""
    from importlib.metadata import entry_points
    from urllib.parse import urlparse

    if not isinstance(value, str) or not value:
        return False
    scheme = urlparse(value).scheme.split("+")[0]
    if len(scheme) == 1 or scheme in TRACKING_SCHEMES:  # C:\\mlruns: a Windows path
        return True
    return scheme in {point.name for point in entry_points(group="mlflow.tracking_store")}  # read only here


# numpy's global seed (which Keras sets) takes 0 .. 2**32 - 1; seed=abc or -1 failed with numpy's traceback
# after the extraction
SEED = (lambda v: whole(v, 0) and v < 2**32, "a whole number from 0 to 4294967295", "0")
ENSEMBLE_K = (lambda v: whole(v, 0) and v != 1, "0 (no ensemble) or a whole number of at least 2", "3")
# a key the regime's config lacks is not checked
RULES: dict[str, Rule] = {
    "seed": SEED,
    "backbone.init_seed": SEED,
    "backbone.bn_images": (*count(1), "32"),  # 0 was Keras's traceback on an empty batch
    "dataset.split_seed": SEED,  # abc got scikit-learn's message and the advice to add images
    "dataset.val_fraction": (lambda v: number(v) and 0 < v < 1, "a number between 0 and 1", "0.2"),
    "explain.n_images": (*count(0), "8"),  # -1 was refused only after the run had trained, and lost it
    "train.max_epochs": (*count(1), "30"),
    "train.batch_size": (*count(1), "32"),
    "train.patience": (*count(0), "3"),
    "train.warmup_epochs": (*count(0), "5"),
    "train.max_iter": (*count(1), "2000"),
    "train.k": (*count(1), "11"),
    "head.units": (*count(1), "256"),
    "train.lr": (*POSITIVE, "1e-3"),
    "train.finetune_lr": (*POSITIVE, "1e-5"),
    "train.gamma": (*POSITIVE, "0.1"),
    "head.dropout": (lambda v: number(v) and 0 <= v < 1, "a fraction from 0 up to (not including) 1", "0.5"),
    "train.momentum": (lambda v: number(v) and 0 <= v <= 1, "a number from 0 to 1", "0.9"),
    "train.min_delta": (lambda v: number(v) and v >= 0, "a number of at least 0", "0.001"),
    "train.step_size": (lambda v: v is None or whole(v, 1),
                        "null (a constant learning rate) or a whole number of at least 1", "10"),
    "train.unfreeze": (lambda v: v == "all" or whole(v, 0), "a whole number of at least 0 or all", "20"),
    "train.c_grid": (lambda v: isinstance(v, list) and bool(v) and all(number(c) and c > 0 for c in v),
                     "a list of positive numbers", "[0.01,0.1,1.0]"),
    "train.optimizer": (*one_of(*OPTIMIZERS), "adam"),
    "train.class_weight": (*one_of(*CLASS_WEIGHTS), "balanced"),
    # Keras takes any other string and flips nothing; false (as null) flips nothing either
    "augment.flip": (lambda v: v is None or v is False or v in FLIP_MODES, one_of(None, *FLIP_MODES)[1],
                     "horizontal"),
    # the ranges Keras's layers accept (RandomZoom's -1 would zoom out to nothing); a fraction of a turn
    "augment.rotation": (*fraction(1), "0.03"),
    "augment.zoom": (*fraction(1, inclusive=False), "0.1"),
    "augment.translation": (*fraction(1), "0.1"),
    "augment.contrast": (*fraction(1), "0.1"),
    "evaluate.n_bootstrap": (*count(1), "1000"),
    "evaluate.bootstrap_seed": (*count(0), "0"),
    "evaluate.ci_level": (lambda v: number(v) and 0 < v < 1, "a number between 0 and 1", "0.95"),
    "evaluate.ece_bins": (*count(1), "15"),
    "evaluate.target_sensitivity": (lambda v: number(v) and 0 < v <= 1, "a number above 0, at most 1",
                                    "0.95"),
    "backbone.weights_fallback": (*one_of(*FALLBACKS), "random"),
    # an unknown scheme was refused by MLflow after the run had trained (in a sweep, after every cell)
    "logger.tracking_uri": (tracking_uri, "a path or a URI MLflow stores runs at (" + ", ".join(
        f"{scheme}:" for scheme in TRACKING_SCHEMES if scheme) + ")", "http://mlflow.lab:5000"),
    "logger.experiment": (lambda v: v is None or (isinstance(v, str) and v != "") or whole(v, 0),
                          "null or a name", "medbench-lung-ct"),
    "logger.artifacts": (lambda v: isinstance(v, bool), "true or false", "false"),
    # TensorFlow aborted the process on -3 (a sweep lost its workers and leaderboard), a traceback on abc
    "runtime.threads": (lambda v: v == "auto" or whole(v, 1), "auto or a whole number of at least 1", "2"),
    "runtime.onnx_min_workload": (*count(0), "3000"),
}


SWEEP_RULES: dict[str, Rule] = {  # a multirun's own settings, checked before its first cell (no run reads
    # them). joblib failed with a traceback on 0; null is joblib's 1, -2 every core but one
    "hydra.launcher.n_jobs": (lambda v: v is None or (not isinstance(v, bool) and isinstance(v, int) and v),
                              "a whole number other than 0 (-1: one cell per core)", "2"),
    "report.ensemble_k": ENSEMBLE_K,  # the sweep's leaderboard: it failed after every cell had trained
}


def check_settings(cfg: DictConfig, rules: dict[str, Rule] = RULES) -> None:
    """Raise a BenchmarkError naming the first bad setting of `rules`, its value and the fix."""
    for key, (valid, rule, example) in rules.items():
        value = OmegaConf.select(cfg, key, default=ABSENT)
        if value is ABSENT:
            continue
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        if not valid(value):
            shown = "null" if value is None else repr(value)
            raise BenchmarkError(f"{key}={shown} must be {rule}: e.g. {key}={example}")


def check_model_and_settings(cfg: DictConfig) -> "RunIdentity":
    """The backbone and its input size, and RULES; the run's identity they were checked on."""
    from backbones.registry import check_image_size
    from benchmark.runs.identity import resolve

    identity = resolve(cfg)
    check_image_size(identity.spec, identity.image_size)
    check_settings(cfg)
    return identity


def check_values(cfg: DictConfig) -> None:
    """Every value a run can be refused for without reading a file: the dataset's choices, the backbone
    and its input size, and RULES. A sweep checks each cell's before its first (`refusal`): on the
    submitting host, where a cluster's data path need not exist."""
    from benchmark.data import check_dataset_values

    check_dataset_values(cfg.dataset)
    check_model_and_settings(cfg)


def check_run(cfg: DictConfig) -> None:
    """Everything a run can be refused for before its data is read or TensorFlow imported: the dataset's
    path and choices, the weights file (a typo named first, without the ImageNet probe's warning), then
    the backbone, its input size and RULES."""
    from backbones.identity import check_weights_file
    from benchmark.data import check_path

    check_path(cfg.dataset)
    check_weights_file(cfg.backbone)
    check_model_and_settings(cfg)


def check_sweep(cells: list[DictConfig], whole_sweep: bool = True) -> None:
    """A batch of a multirun's cells, before its first trains: refused for every cell, the sweep stops
    there in one line (values such as train.lr=abc where the batch is the whole sweep; search settings such
    as n_trials=0 or a test metric in any batch, earlier batches having run). Where
    hydra.sweeper.max_batch_size splits the sweep, a batch of cells whose values are refused (inceptionv3's
    seeds below its minimum size) is no reason to stop the others: those cells fail at their turn, recorded
    like any failing cell, as does a cell refused alone (hparams_search=finetune on its train=frozen)."""
    found = [refusal(cell, values=whole_sweep) for cell in cells]
    if found and all(found):
        raise found[0]


def refusal(cell: DictConfig, values: bool = True) -> Exception | None:
    """Why this cell would be refused before its data (`check_values` where `values`, and check_search for
    a search); None for a cell that would run. Any error counts: a cell whose config cannot be resolved
    would fail at its turn too."""
    from benchmark.runs.search_space import check_search

    try:
        if values:
            check_values(cell)
        if cell.get("hparams_search"):
            check_search(cell)
    except Exception as error:
        return error
    return None
