"""What an Optuna search (`hparams_search=<name>`) may search and choose on, checked before its study
exists: a validation metric in its direction, n_trials, sampler_seed, and a space whose every key this
run's config has, changes what is trained and its train mode reads, with values valid for that key (the
rules of `runs/settings.py`). Each bad setting is one BenchmarkError naming the key, value and fix."""

import difflib
from typing import Any

from omegaconf import DictConfig, OmegaConf

from benchmark.cli import option_names, options_with
from benchmark.errors import BenchmarkError
from benchmark.runs.identity import NOT_PART_OF_THE_EXPERIMENT, NOT_PART_OF_TRAINING, unread_by_probe
from benchmark.runs.settings import ABSENT, RULES, number, whole

# The values a run's metrics.json holds that were computed on the validation split, and the direction a
# study optimises each in: a search may choose only among these (any other key is a test metric).
VALIDATION_METRICS = {
    "val_macro_auroc": "maximize", "best_val_accuracy": "maximize", "best_val_loss": "minimize",
}


def direction_of(metric: str) -> str:
    """Optuna's direction for `metric`; one not computed on validation stops the search before a trial."""
    if metric not in VALIDATION_METRICS:
        raise BenchmarkError(
            f"hparams_search.metric={metric} is not a validation metric (a search must never choose on the "
            f"test split): use one of {', '.join(VALIDATION_METRICS)}"
        )
    return VALIDATION_METRICS[metric]


ITEM_KEYS = ("key", "choices", "low", "high", "log")
EXAMPLE = "e.g. {key: head.dropout, low: 0.0, high: 0.6} or {key: head.units, choices: [64, 128]}"


def check_search(cfg: DictConfig) -> None:
    """The search's own settings, before a study is created or a file written: the metric, n_trials,
    sampler_seed and every space item (its shape; its key one this run's config has, that changes what is
    trained and that the train mode reads; its choices or range valid values of that key). A bad one is
    a BenchmarkError naming the key, the value and the fix."""
    spec = cfg.hparams_search
    direction_of(spec.metric)
    if not whole(spec.n_trials, 1):
        raise BenchmarkError(
            f"hparams_search.n_trials={spec.n_trials!r} must be a whole number of at least 1: "
            "e.g. hparams_search.n_trials=20"
        )
    if not (whole(spec.sampler_seed, 0) and spec.sampler_seed < 2**31):  # NumPy seeds TPE (< 2**32)
        raise BenchmarkError(
            f"hparams_search.sampler_seed={spec.sampler_seed!r} must be a whole number from 0 to 2147483647: "
            "e.g. hparams_search.sampler_seed=0"
        )
    space = spec.get("space")
    if not OmegaConf.is_list(space) or not space:
        raise BenchmarkError(
            f"hparams_search.space={shown(space)} must be a non-empty list of items: {EXAMPLE} "
            "(see conf/hparams_search/head.yaml)"
        )
    seen = set()
    for item in space:
        key = check_item(item)
        if key in seen:
            raise BenchmarkError(f"hparams_search.space searches {key} twice: keep one item for it")
        seen.add(key)
        check_key(cfg, key)
        check_values(cfg, item)


def shown(value: Any) -> str:
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    return "null" if value is None else repr(value)


def check_item(item: Any) -> str:
    """An item's shape: a key, and either a non-empty list of choices or numeric low < high (log: low > 0).
    Returns its key."""
    if not OmegaConf.is_dict(item) or not isinstance(item.get("key"), str) or not item.key:
        raise BenchmarkError(f"hparams_search.space item {shown(item)} needs a key: {EXAMPLE}")
    key, where = item.key, f"hparams_search.space item {item.key}"
    if unknown := [str(k) for k in item if k not in ITEM_KEYS]:
        raise BenchmarkError(f"{where} has {', '.join(unknown)}, which an item does not take: use "
                             f"{', '.join(ITEM_KEYS)}")
    if "choices" in item:
        choices = item.choices
        if "low" in item or "high" in item or "log" in item:
            raise BenchmarkError(f"{where} has choices and a range: give choices or low/high, not both")
        if not OmegaConf.is_list(choices) or not choices or any(OmegaConf.is_config(c) for c in choices):
            raise BenchmarkError(f"{where} has choices={shown(choices)}: give a non-empty list of values, "
                                 f"{EXAMPLE}")
        return key
    low, high, log = item.get("low"), item.get("high"), item.get("log", False)
    if not (number(low) and number(high)):
        raise BenchmarkError(f"{where} has low={shown(low)}, high={shown(high)}: give numbers low < high, or "
                             f"choices, {EXAMPLE}")
    if not low < high:
        raise BenchmarkError(f"{where} has low={low} >= high={high}: give low < high, e.g. "
                             f"{{key: {key}, low: {min(low, high)}, high: {max(low, high)}}}")
    if not isinstance(log, bool):
        raise BenchmarkError(f"{where} has log={shown(log)}: use log: true or log: false")
    if log and low <= 0:
        raise BenchmarkError(f"{where} has log: true with low={low}: log needs low > 0, or log: false")
    return key


def check_key(cfg: DictConfig, key: str) -> None:
    """A key this run's config has, that changes what is trained, and that its train mode reads: otherwise
    every trial would be the same training under another name."""
    where, mode = f"hparams_search={cfg.hparams_search.name} searches {key}", cfg.train.mode
    group, _, rest = key.partition(".")
    value = OmegaConf.select(cfg, key, default=ABSENT)
    if value is ABSENT:
        fix = missing_key_fix(cfg, key)
        raise BenchmarkError(f"{where}, which {chosen(cfg, group)} does not have: {fix}")
    if OmegaConf.is_config(value):
        raise BenchmarkError(f"{where}, a group of settings: search one of its keys, e.g. "
                             f"{key}.{next(iter(value), '...')}")
    if group in NOT_PART_OF_THE_EXPERIMENT or group == "train" and rest in NOT_PART_OF_TRAINING:
        raise BenchmarkError(f"{where}, which does not change what is trained (every trial would be the same "
                             "run): search train.*, head.*, augment.* or backbone.* keys")
    if group == "augment" and mode != "finetune":
        raise BenchmarkError(f"{where}, which train={mode} does not use (its cached features are never "
                             "augmented): add train=finetune")
    if unread_by_probe(mode, key):
        raise BenchmarkError(f"{where}, which train={mode} does not read: add train=frozen or "
                             "train=finetune, or search the probe's own train.* keys")


def chosen(cfg: DictConfig, group: str) -> str:
    """How the user chose the key's group: train=frozen, augment=none, ...; else the config itself."""
    if group == "train":
        return f"train={cfg.train.mode}"
    node = cfg.get(group)
    return f"{group}={node.name}" if OmegaConf.is_dict(node) and node.get("name") else "this run's config"


def missing_key_fix(cfg: DictConfig, key: str) -> str:
    """The config group options that have the key (add train=finetune), else the nearest key (a typo)."""
    group, options = options_with(key, inherited=False)  # the options that read it
    if options:
        return f"add {' or '.join(f'{group}={option}' for option in options)}"
    if close := difflib.get_close_matches(key, option_names(OmegaConf.to_container(cfg)), n=1):
        return f"did you mean {close[0]}? (fix the key in hparams_search.space)"
    return "fix or remove the key in hparams_search.space"


def check_values(cfg: DictConfig, item: DictConfig) -> None:
    """The values a trial can get are valid for the key (the rules of benchmark/runs/settings.py): every
    choice, and a range's ends as the floats Optuna suggests; a range only over a fractional setting."""
    key = item.key
    valid, rule, example = RULES.get(key, (None, None, None))
    where = f"hparams_search.space item {key}"
    if "choices" in item:
        for value in OmegaConf.to_container(item.choices):
            if valid and not valid(value):
                raise BenchmarkError(f"{where} offers {shown(value)}, but {key} must be {rule}: e.g. "
                                     f"{key}={example}")
        return
    low, high = float(item.low), float(item.high)
    current = OmegaConf.select(cfg, key)
    if valid and not (valid(low) and valid(high)):
        fix = (f"give choices, e.g. {{key: {key}, choices: [{int(low)}, {int(high)}]}}"
               if low.is_integer() and high.is_integer() and valid(int(low)) and valid(int(high))
               else "give a range within it, or choices")
        raise BenchmarkError(f"{where} ranges over fractions from {low} to {high}, but {key} must be {rule}: "
                             f"{fix}")
    if not valid and not (current is None or isinstance(current, float)):
        raise BenchmarkError(f"{where} ranges over fractions, but {key}={shown(current)} is not a fractional "
                             "setting: give choices")
