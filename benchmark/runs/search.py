"""`hparams_search=<name>`: an Optuna study per (search, metric, dataset and its data version, backbone,
mode, seed, fixed settings, space: `study_name`), on validation only.

Optuna directly rather than Hydra's Optuna sweeper: the sweeper's newest release pins optuna < 3 and pulls
a hydra-core release candidate, and that optuna's SQLite storage fails with SQLAlchemy 2 on Python 3.11.
Each trial is an ordinary run (its own run directory, resumable, in the leaderboard's "All configurations");
the study is a SQLite file under <results_dir>/search/, held by one process at a time. A process killed
mid-trial leaves that trial RUNNING: the next start finishes it (same parameters, and its run directory
is reused if the run itself had completed) before asking for new ones, so a resumed study of n trials
has n trials, not n + the number of kills. The search's settings and space are checked (check_search)
before the study is created: a space key the run's config lacks, or does not read, is refused.
"""

import logging
import math
import re
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf, open_dict

from benchmark.errors import BenchmarkError
from benchmark.files import digest, read_json, write_json
from benchmark.runs.identity import config_hash, resolve
from benchmark.runs.search_space import direction_of
from benchmark.runs.settings import number

log = logging.getLogger(__name__)
DATA_SUFFIX = re.compile(r"-data([0-9a-f]{8})$")  # a study's name ends in its data's version (with_data)


def space_digest(space) -> str:
    """A short hash of the searched keys and their choices or ranges: another space is another study
    (Optuna refuses a stored parameter's distribution changing, and a new choice would never be tried)."""
    return digest(OmegaConf.to_container(space), length=6)


def data_fingerprint(cfg: DictConfig) -> str:
    """The loaded dataset's fingerprint (its files' content, labels and splits), as runs record it; loaded
    once per process for a sweep's cells (resume.dataset_of)."""
    from benchmark.runs.resume import dataset_of  # imports TensorFlow: after check_search's refusals

    return dataset_of(cfg).fingerprint


def with_data(name: str, fingerprint: str) -> str:
    """The study's name ended by its data's version (the fingerprint's first 8 characters): the same
    folder with other images is another study."""
    return f"{name}-data{fingerprint[:8]}"


def data_in_name(name: str) -> tuple[str, str | None]:
    """A study's name split into what precedes its data's version and that version (with_data); (name,
    None) for a study named before the data's version was."""
    found = DATA_SUFFIX.search(name)
    return (name[: found.start()], found.group(1)) if found else (name, None)


def study_name(cfg: DictConfig, data: str | None = None) -> str:
    """Search, metric, dataset, backbone, mode, seed, the hash of every setting the search does not vary
    (the run's own config hash with the searched keys blanked), the hash of the space and the data's
    version: another base configuration, metric or space is another study
    (Optuna would load a stored study with its old direction and distributions), and so is the same
    folder with other images (its trials' values are not comparable with the old data's). `data`: the
    data's fingerprint, where the caller has it."""
    run = resolve(cfg)
    base = with_values(cfg, {item.key: None for item in cfg.hparams_search.space})
    fixed = config_hash(base, run.image_size)
    search = cfg.hparams_search
    name = (f"{search.name}-{search.metric}-{run.dataset}-{run.spec.name}-{cfg.train.mode}-seed{run.seed}"
            f"-{fixed}-space{space_digest(search.space)}")
    return with_data(name, data or data_fingerprint(cfg))


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


DONE = ("COMPLETE", "FAIL", "PRUNED")  # trial states the study does not run again


def summary(study, metric: str, n_trials: int, data: str | None = None) -> dict:
    """What the report shows: every trial and the best finished one (the run directory of each). Written
    after every trial, so it also says whether the study is `finished` (its `target_trials` all done:
    the report trusts a finished study over a failure its cell recorded) and the fingerprint of the data
    it searched on (the report lists a study only on the data it ranks)."""
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
        "data_fingerprint": data,
        "target_trials": n_trials,
        "finished": len(trials) >= n_trials and all(t["state"] in DONE for t in trials),
        "n_trials": len(trials),
        "n_complete": len(finished),
        "best": best(finished, key=lambda t: t["value"]) if finished else None,
        "trials": trials,
    }


def write_summary(study, cfg: DictConfig, data: str) -> dict:
    """<results_dir>/search/<study>.json, as it stands now (`data`: the study's data fingerprint)."""
    spec = cfg.hparams_search
    result = summary(study, spec.metric, spec.n_trials, data)
    write_json(Path(cfg.results_dir) / "search" / f"{study.study_name}.json", result)
    return result


def search(cfg: DictConfig, run: Callable[[DictConfig], dict]) -> float:
    """Run (or resume) the study up to `n_trials` trials; `run` is the pipeline's run function. Returns
    the best validation value. Its settings were checked by the caller (`check_search`, before the data
    and TensorFlow)."""
    try:
        import optuna
    except ImportError:
        raise BenchmarkError("hparams_search needs Optuna: pip install -e '.[search]'") from None
    spec = cfg.hparams_search
    data = data_fingerprint(cfg)  # the same for every trial of the study
    direction = direction_of(spec.metric)
    name = study_name(cfg, data)
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
            log.info("study %s: resuming interrupted trial %d", name, frozen.number + 1)  # 1-based, as below
            evaluate(optuna.trial.Trial(study, frozen._trial_id), study, cfg, run, data)
        while len(study.trials) < spec.n_trials:
            evaluate(study.ask(), study, cfg, run, data)
        result = write_summary(study, cfg, data)
    if not result["best"]:
        raise BenchmarkError(f"study {name}: no trial finished (see the failed runs in the log)")
    forget_failure(resolve(cfg).run_dir, result)
    best = result["best"]
    log.info("study %s: best %s %.4f with %s (%s)", name, spec.metric, best["value"], best["params"],
             best["run_dir"])
    return float(best["value"])


def made_good(failure: dict, result: dict) -> bool:
    """Whether a search cell's failed.json is answered by its study's summary (result): the same study,
    finished (all its target trials done, none left running) with a best trial, and at least the trials
    the cell asked for. A best trial alone is not enough: the summary is written after every trial, so a
    study whose later trial failed has one too; a summary written before `finished` was cannot tell."""
    study, wanted, target = failure.get("study"), failure.get("n_trials"), result.get("target_trials")
    if not study or study != result.get("study") or not result.get("best"):
        return False
    return result.get("finished") is True and number(target) and (not number(wanted) or target >= wanted)


def forget_failure(run_dir: Path, result: dict) -> None:
    """Remove the failed.json a sweep recorded for this study (held by another process, say) once the
    study's summary makes it good (made_good), and the folder it alone made: the report would list it as
    failed long after."""
    record = run_dir / "failed.json"
    try:
        if not made_good(read_json(record), result):
            return  # none, an ordinary run's failure of this configuration, or a cell that asked for more
        record.unlink()
        run_dir.rmdir()  # only when the record was all it held
    except (OSError, ValueError, TypeError, AttributeError):  # unreadable, or not a record of ours
        return


def evaluate(trial, study, cfg: DictConfig, run: Callable[[DictConfig], dict], data: str) -> None:
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
        log.error("study %s: trial %d failed: %s", study.study_name, trial.number + 1, error)
        value = math.nan
    if math.isnan(value):  # also e.g. a validation split without every class: no AUROC
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(trial, value)
    write_summary(study, cfg, data)
