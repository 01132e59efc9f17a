"""`hparams_search=<name>`: an Optuna study per (dataset, backbone, mode, search, space), on validation only.

Optuna directly rather than Hydra's Optuna sweeper: the sweeper's newest release pins optuna < 3 and pulls
a hydra-core release candidate, and that optuna's SQLite storage fails with SQLAlchemy 2 on Python 3.11.
Each trial is an ordinary run (its own run directory, resumable, in the leaderboard's "All configurations");
the study is a SQLite file under <results_dir>/search/, held by one process at a time. A process killed
mid-trial leaves that trial RUNNING: the next start finishes it (same parameters, and its run directory
is reused if the run itself had completed) before asking for new ones, so a resumed study of n trials
has n trials, not n + the number of kills. The search's settings and space are checked (check_search)
before the study is created: a space key the run's config lacks, or does not read, is refused.
"""

import difflib
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf, open_dict

from benchmark.errors import BenchmarkError
from benchmark.files import digest, write_json
from benchmark.runs.identity import NOT_PART_OF_THE_EXPERIMENT, NOT_PART_OF_TRAINING, config_hash, resolve
from benchmark.runs.settings import ABSENT, RULES, number, whole

log = logging.getLogger(__name__)

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


CONF = Path(__file__).resolve().parents[2] / "conf"
ITEM_KEYS = ("key", "choices", "low", "high", "log")
PROBES = ("knn", "linear")  # train modes that fit no Keras head: head.* is not read by them
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
    if mode in PROBES and (group == "head" or group == "train" and not in_option_file("train", mode, rest)):
        raise BenchmarkError(f"{where}, which train={mode} does not read: add train=frozen or "
                             "train=finetune, or search the probe's own train.* keys")


def chosen(cfg: DictConfig, group: str) -> str:
    """How the user chose the key's group: train=frozen, augment=none, ...; else the config itself."""
    if group == "train":
        return f"train={cfg.train.mode}"
    node = cfg.get(group)
    return f"{group}={node.name}" if OmegaConf.is_dict(node) and node.get("name") else "this run's config"


def in_option_file(group: str, option: str, rest: str) -> bool:
    """Whether conf/<group>/<option>.yaml itself sets `rest` (not through its defaults list)."""
    path = CONF / group / f"{option}.yaml"
    return path.is_file() and OmegaConf.select(OmegaConf.load(path), rest, default=ABSENT) is not ABSENT


def missing_key_fix(cfg: DictConfig, key: str) -> str:
    """The config group options that have the key (add train=finetune), else the nearest key (a typo)."""
    group, _, rest = key.partition(".")
    folder = CONF / group
    options = [path.stem for path in sorted(folder.glob("*.yaml")) if in_option_file(group, path.stem, rest)
               ] if rest and folder.is_dir() else []
    if options:
        return f"add {' or '.join(f'{group}={option}' for option in options)}"
    if close := difflib.get_close_matches(key, leaf_keys(OmegaConf.to_container(cfg)), n=1):
        return f"did you mean {close[0]}? (fix the key in hparams_search.space)"
    return "fix or remove the key in hparams_search.space"


def leaf_keys(node: dict, prefix: str = "") -> list[str]:
    keys = []
    for name, value in node.items():
        keys += leaf_keys(value, f"{prefix}{name}.") if isinstance(value, dict) else [f"{prefix}{name}"]
    return keys


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


def space_digest(space) -> str:
    """A short hash of the searched keys and their choices or ranges: another space is another study
    (Optuna refuses a stored parameter's distribution changing, and a new choice would never be tried)."""
    return digest(OmegaConf.to_container(space), length=6)


def study_name(cfg: DictConfig) -> str:
    """Search, metric, dataset, backbone, mode, seed, the hash of every setting the search does not vary
    (the run's own config hash with the searched keys blanked) and the hash of the space: another base
    configuration, metric or space is another study (Optuna would load a stored study with its old
    direction and distributions)."""
    run = resolve(cfg)
    base = with_values(cfg, {item.key: None for item in cfg.hparams_search.space})
    fixed = config_hash(base, run.image_size)
    search = cfg.hparams_search
    return (f"{search.name}-{search.metric}-{run.dataset}-{run.spec.name}-{cfg.train.mode}-seed{run.seed}"
            f"-{fixed}-space{space_digest(search.space)}")


def suggest(trial, space) -> dict:
    """One value per searched key: categorical from `choices`, else a float in [low, high] (log scale
    when `log`); Optuna returns the stored value for a trial that already has it (a resumed trial)."""
    values = {}
    for item in space:
        if "choices" in item:
            values[item.key] = trial.suggest_categorical(item.key, list(item.choices))
        else:
            values[item.key] = trial.suggest_float(item.key, item.low, item.high, log=bool(item.get("log")))
    return values


def with_values(cfg: DictConfig, values: dict) -> DictConfig:
    trial_cfg = cfg.copy()
    with open_dict(trial_cfg):
        for key, value in values.items():
            OmegaConf.update(trial_cfg, key, value, merge=False)
    return trial_cfg


def summary(study, metric: str) -> dict:
    """What the report shows: every trial and the best finished one (the run directory of each)."""
    trials = [
        {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
         "run_dir": t.user_attrs.get("run_dir")}
        for t in study.trials
    ]
    finished = [t for t in trials if t["state"] == "COMPLETE"]
    direction = direction_of(metric)
    best = max if direction == "maximize" else min
    return {
        "study": study.study_name,
        "metric": metric,
        "direction": direction,
        "n_trials": len(trials),
        "n_complete": len(finished),
        "best": best(finished, key=lambda t: t["value"]) if finished else None,
        "trials": trials,
    }


def search(cfg: DictConfig, run: Callable[[DictConfig], dict]) -> float:
    """Run (or resume) the study up to `n_trials` trials; `run` is the pipeline's run function. Returns
    the best validation value."""
    try:
        import optuna
    except ImportError:
        raise BenchmarkError("hparams_search needs Optuna: pip install -e '.[search]'") from None
    spec = cfg.hparams_search
    check_search(cfg)
    direction = direction_of(spec.metric)
    name = study_name(cfg)
    folder = Path(cfg.results_dir) / "search"
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / f".{name}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise BenchmarkError(
            f"study {name} is being run by another process ({folder}): wait for it, or search another "
            "backbone"
        ) from None
    with lock:
        study = optuna.create_study(
            study_name=name,
            storage=f"sqlite:///{(folder / f'{name}.db').resolve()}",
            direction=direction,
            load_if_exists=True,
        )
        # seeded by how far the study is: a resumed search does not replay the first run's suggestions
        study.sampler = optuna.samplers.TPESampler(seed=spec.sampler_seed + len(study.trials))
        interrupted = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
        for frozen in interrupted:  # we hold the lock: a RUNNING trial is one a killed process left
            log.info("study %s: resuming interrupted trial %d", name, frozen.number)
            evaluate(optuna.trial.Trial(study, frozen._trial_id), study, cfg, run)
        while len(study.trials) < spec.n_trials:
            evaluate(study.ask(), study, cfg, run)
        result = summary(study, spec.metric)
        write_json(folder / f"{name}.json", result)
    if not result["best"]:
        raise BenchmarkError(f"study {name}: no trial finished (see the failed runs in the log)")
    best = result["best"]
    log.info("study %s: best %s %.4f with %s (%s)", name, spec.metric, best["value"], best["params"],
             best["run_dir"])
    return float(best["value"])


def evaluate(trial, study, cfg: DictConfig, run: Callable[[DictConfig], dict]) -> None:
    """One trial: its run (or the completed run of the same configuration), its validation value told."""
    import optuna

    values = suggest(trial, cfg.hparams_search.space)
    trial_cfg = with_values(cfg, values)
    trial.set_user_attr("run_dir", str(resolve(trial_cfg).run_dir))
    log.info("study %s: trial %d of %d: %s", study.study_name, trial.number + 1, cfg.hparams_search.n_trials,
             values)
    try:
        value = float(run(trial_cfg)[cfg.hparams_search.metric])
    except BenchmarkError:
        raise
    except Exception as error:  # out of memory, a diverged run: the trial failed, the study goes on
        log.error("study %s: trial %d failed: %s", study.study_name, trial.number, error)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    if math.isnan(value):  # e.g. a validation split without every class: no AUROC
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    study.tell(trial, value)
    write_json(Path(cfg.results_dir) / "search" / f"{study.study_name}.json",
               summary(study, cfg.hparams_search.metric))
