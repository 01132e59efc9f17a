"""What a run is, decided once at its start: backbone spec, image size, dataset name, config hash and
run directory. Everything downstream receives this record instead of re-deriving any of it."""

import copy
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from backbones.registry import BackboneSpec, get, with_preprocess
from benchmark.cli import CONF, in_option_file, option_settings
from benchmark.data import dataset_name
from benchmark.errors import BenchmarkError
from benchmark.files import digest
from benchmark.runs.layout import run_name, run_path

# Settings that do not change what is trained or how it is scored: runs differing only here are the same.
NOT_PART_OF_THE_EXPERIMENT = ("results_dir", "cache_dir", "data_dir", "seed", "force", "debug", "hydra",
                              "explain", "efficiency", "report", "runtime", "logger", "hparams_search")
NOT_PART_OF_TRAINING = ("save_model", "run_eagerly")
# Options added after runs existed, whose null default keeps the earlier behaviour: hashed only when set,
# so completed runs keep their directory and are not repeated.
HASHED_ONLY_WHEN_SET = (("backbone", "preprocess"),)
PROBES = ("knn", "linear")  # train modes that fit no Keras head: head.* is not read by them
# the regimes on the frozen backbone's cached features (no augmentation; one extractor per backbone)
ON_CACHED_FEATURES = ("frozen", *PROBES)
# a vote of neighbours has no class score to differentiate: no Grad-CAM (here, not in benchmark/train/,
# because the report, which must not import TensorFlow, leaves such rows out of a sweep's maps)
WITHOUT_GRADCAM = ("knn",)


def unread_by_probe(mode: str, key: str) -> bool:
    """Whether a probe ignores the dotted key: the head's settings, and the train keys its option file
    inherits from frozen (so a regime sweep shares overrides) without setting them itself."""
    group, _, rest = key.partition(".")
    return mode in PROBES and (group == "head" or group == "train" and not in_option_file(group, mode, rest))


@dataclass(frozen=True)
class RunIdentity:
    spec: BackboneSpec
    image_size: int
    dataset: str
    seed: int
    config_hash: str
    run_dir: Path


def config_hash(cfg: DictConfig, image_size: int) -> str:
    """Hash of the resolved experiment: paths, flags, reporting options and Hydra's node left out, the
    effective image size and the absolute data path put in, so equal experiments share one directory."""
    experiment = OmegaConf.masked_copy(cfg, [k for k in cfg if k not in NOT_PART_OF_THE_EXPERIMENT])
    resolved = OmegaConf.to_container(experiment, resolve=True)
    for key in NOT_PART_OF_TRAINING:
        resolved["train"].pop(key, None)
    for group, key in HASHED_ONLY_WHEN_SET:
        if resolved[group].get(key) is None:
            resolved[group].pop(key, None)
    at_probe_defaults(resolved)
    resolved["image_size"] = image_size
    if resolved["dataset"].get("path"):
        resolved["dataset"]["path"] = str(Path(resolved["dataset"]["path"]).expanduser().resolve())
    return digest(resolved, length=8)


def unread_defaults(mode: str) -> dict[str, dict]:
    """A probe's unread settings with their defaults, by group (head, train); nothing for other modes.
    A fresh copy of `_unread_defaults`, which reads the config files once per process."""
    return {group: dict(values) for group, values in copy.deepcopy(_unread_defaults(mode))}


@cache
def _unread_defaults(mode: str) -> tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]:
    if mode not in PROBES:
        return ()
    defaults = {"head": OmegaConf.load(CONF / "config.yaml").head, "train": option_settings("train", mode)}
    return tuple((group, tuple((key, value) for key, value in OmegaConf.to_container(values).items()
                               if unread_by_probe(mode, f"{group}.{key}")))
                 for group, values in defaults.items())


def at_probe_defaults(node: DictConfig | dict) -> None:
    """A probe's unread settings set to their defaults: in the config itself, so what its run records
    (config.yaml, MLflow's parameters, the efficiency cache's key) is what its hash says, and in the
    resolved copy `config_hash` digests, so `train=knn train.lr=0.1` (or a regime sweep's shared
    overrides) is the knn run already made, not a second identical row; a probe run made with the defaults
    keeps its directory."""
    for group, values in unread_defaults(node["train"]["mode"]).items():
        for key, value in values.items():
            if key in node[group]:
                node[group][key] = value


def ignored_by_probe(cfg: DictConfig) -> list[str]:
    """The settings a probe run was given but does not read, as key=value, where they leave the default."""
    given = {group: OmegaConf.to_container(cfg[group], resolve=True) for group in ("head", "train")}
    return [f"{group}.{key}={given[group][key]}"
            for group, values in unread_defaults(cfg.train.mode).items()
            for key, value in values.items() if key in given[group] and given[group][key] != value]


def resolve(cfg: DictConfig) -> RunIdentity:
    """The run's identity; an unknown backbone stops here (the input size is checked by the pipeline, so a
    sweep cell at a size its backbone cannot take is still filed under its own directory as failed)."""
    spec = with_preprocess(get(cfg.backbone.name), cfg.backbone.get("preprocess"))
    image_size = cfg.image_size or spec.default_size
    if isinstance(image_size, bool) or not isinstance(image_size, int):
        raise BenchmarkError(
            f"image_size={image_size!r} is not a whole number of pixels: use e.g. "
            f"image_size={spec.default_size} (or image_size=null for the backbone's default)"
        )
    name = dataset_name(cfg.dataset)
    hashed = config_hash(cfg, image_size)
    run_dir = run_path(Path(cfg.results_dir), name, spec.name, run_name(cfg.seed, hashed))
    return RunIdentity(spec, image_size, name, cfg.seed, hashed, run_dir)
