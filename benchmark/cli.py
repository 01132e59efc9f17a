"""What every command shares: one-line user errors (exit 2), `key=value` parsing for the small commands
(predict, explain, ensemble, evaluate, export, cache, bench) without Hydra's output folders, and loading a
run's model.

Defaults of a small command come from conf/<name>.yaml; an unknown key, a missing required value or a
BenchmarkError becomes one `error:` line on stderr and exit status 2, like `python -m benchmark`.
"""

import logging
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from benchmark.errors import BenchmarkError
from benchmark.runs.settings import ABSENT, whole

CONF = Path(__file__).resolve().parents[1] / "conf"
USER_ERRORS = (BenchmarkError, MissingMandatoryValue)


# Hydra launchers that are plugins, and the pyproject extra that installs each.
LAUNCHER_EXTRAS = {
    "joblib": "cluster", "submitit_slurm": "cluster", "submitit_local": "cluster",
    "submitit_local_array": "cluster", "ray": "ray",
}


def missing_plugin(message: str) -> str | None:
    """The install command for a launcher whose Hydra plugin is absent (its config cannot be found)."""
    found = re.search(r"Could not (?:load|find) 'hydra/launcher/(\w+)'", message)
    if not found or found.group(1) not in LAUNCHER_EXTRAS:
        return None
    name, extra = found.group(1), LAUNCHER_EXTRAS[found.group(1)]
    return f"the Hydra launcher plugin '{name}' is not installed: pip install -e '.[{extra}]'"


def option_settings(group: str, option: str, inherited: bool = True) -> DictConfig:
    """What conf/<group>/<option>.yaml puts under `group`: its own keys and, with `inherited`, those of the
    options of the same group its defaults list names (knn's frozen keys); nothing for a `@package
    _global_` option (a paper preset's keys are not under experiment.)."""
    path = CONF / group / f"{option}.yaml"
    text = path.read_text() if path.is_file() else ""
    if not text or "@package _global_" in text:
        return OmegaConf.create()
    own = OmegaConf.create(text)
    defaults = own.pop("defaults", None) or []
    parents = [name for name in defaults if isinstance(name, str) and name != "_self_"] if inherited else []
    return OmegaConf.merge(*(option_settings(group, p) for p in parents), own)


def in_option_file(group: str, option: str, rest: str) -> bool:
    """Whether conf/<group>/<option>.yaml itself sets `rest` (not through its defaults list)."""
    path = CONF / group / f"{option}.yaml"
    return path.is_file() and OmegaConf.select(OmegaConf.load(path), rest, default=ABSENT) is not ABSENT


def options_with(key: str, inherited: bool = True) -> tuple[str, list[str]]:
    """The config group a dotted key starts with, and its options that have the key (`option_settings`):
    a key one option lacks is no typo (train.warmup_epochs with train=knn)."""
    group, _, rest = key.partition(".")
    if not rest or not (CONF / group).is_dir():
        return group, []
    return group, [path.stem for path in sorted((CONF / group).glob("*.yaml"))
                   if OmegaConf.select(option_settings(group, path.stem, inherited), rest, default=ABSENT)
                   is not ABSENT]  # a setting may be null


def one_line(error: BaseException) -> str:
    """A user error as one line that names the problem and, where Hydra knows them, the valid options."""
    from hydra.errors import OverrideParseException

    if isinstance(error.__cause__, BenchmarkError):  # a launcher's own check, wrapped by Hydra's instantiate
        return one_line(error.__cause__)

    if isinstance(error, OverrideParseException):  # Hydra's own message points at a column, not the fix
        key, equals, value = str(error.override).partition("=")
        if not equals:  # a bare value: a path typed without its key, mostly
            return (f"cannot read the override {error.override}: every argument is key=value, e.g. "
                    f"results_dir={error.override} (or a run's dataset.path={error.override})")
        quoted = f"\"{key}='{value}'\"" if value and "'" not in value else "\"dataset.path='~/data/ct'\""
        return (
            f"cannot read the override {error.override}: quote a value holding ~, spaces, brackets, commas "
            f"or non-ASCII letters, e.g. {quoted} (Hydra's override grammar; the double quotes keep the "
            "shell off the single ones)"
        )
    if isinstance(error, MissingMandatoryValue):
        key = error.full_key
        return f"{key} is required: add {key}=<value> (e.g. dataset=folder dataset.path=/data/ct)"
    if plugin := missing_plugin(str(error)):
        return plugin
    if unknown := re.search(r"Could not override '([^']+)'\.\s+To append", str(error)):  # a typo, mostly
        key = unknown.group(1)
        group, owners = options_with(key)
        if owners:  # a setting of other options of its group: train.warmup_epochs with train=knn in a sweep
            listed = ", ".join(f"{group}={owner}" for owner in owners)
            return (f"{key} is a setting of {listed} only, not of the {group} this command (or a cell of its "
                    f"sweep) uses: add {group}={owners[0]}, or set it in a command of its own for those")
        return (f"{key} is not a setting: check its spelling (the command with --cfg job lists them all); "
                f"Hydra's +{key}=... would add it with nothing reading it")
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    options = getattr(error, "options", None)
    message = " ".join(lines[: 1 if options else 2]) if lines else type(error).__name__
    return f"{message} (choose one of: {', '.join(options)})" if options else message


def fail(error: BaseException) -> None:
    """Print the one `error:` line, on a line of its own, and exit with status 2."""
    print(f"{close_progress_bars()}error: {one_line(error)}", file=sys.stderr)
    raise SystemExit(2) from None


def close_progress_bars() -> str:
    """Close the progress bars an error interrupted; a line break if one was on screen, so the error
    line never continues a bar."""
    from tqdm import tqdm

    bars = list(getattr(tqdm, "_instances", ()))
    for bar in bars:
        bar.close()
    return "\n" if bars else ""


def or_fail(work: Callable[[], Any], debug: bool) -> Any:
    """Run `work`; a user error becomes the one-line exit 2 unless `debug` asks for the traceback."""
    try:
        return work()
    except USER_ERRORS as error:
        if debug:
            raise
        fail(error)


def interrupt(signum: int, frame: object) -> None:
    """SIGTERM (a scheduler's or `kill`'s stop) as Ctrl-C: Python's default for it exits at once, leaving a
    sweep's figure worker and joblib's workers running on as orphans; an interrupt unwinds and stops them."""
    raise KeyboardInterrupt


def run_hydra(main: Callable[[], object]) -> None:
    """Run a @hydra.main function; Hydra's own errors (bad override, unknown option) become one line, as
    does a SLURM launcher on a machine without SLURM, and an interrupt is one line and status 130. Our
    own user errors become one line where they are raised (`or_fail`, the sweeper's search check), where
    the config's debug is known: debug=true shows their traceback."""
    from hydra.errors import HydraException

    signal.signal(signal.SIGTERM, interrupt)
    try:
        main()
    except (HydraException, OmegaConfBaseException) as error:
        fail(error)
    except RuntimeError as error:
        if 'Could not detect "srun"' not in str(error):  # submitit's check for a SLURM cluster
            raise
        fail(BenchmarkError("hydra/launcher=slurm needs a SLURM cluster (no srun here): run it where sbatch "
                            "is, or use hydra/launcher=slurm_local (submitit on this machine) or workers"))
    except (NotADirectoryError, FileExistsError) as error:  # Hydra making its folder, before our checks
        if (blocking := file_in_the_way(error.filename)) is None:
            raise
        fail(BenchmarkError(f"cannot make the folder {error.filename}: a file is in the way ({blocking}): "
                            "point the setting that names it (results_dir, data_dir, cache_dir) at a folder"))
    except KeyboardInterrupt:
        print(f"{close_progress_bars()}interrupted: finished runs are kept; the same command resumes the "
              "rest", file=sys.stderr)
        raise SystemExit(130) from None


def file_in_the_way(path: object) -> Path | None:
    """The file at `path` or above it that stops a folder being made there; None where there is none (a
    race between two processes making one folder, say: not the user's to fix)."""
    if not path:
        return None
    folder = Path(str(path))
    return next((p for p in (folder, *folder.parents) if p.is_file()), None)


def option_names(node: dict, prefix: str = "") -> list[str]:
    """Every settable key, dotted: run, n_images, ..., figure.alpha, ..."""
    names = []
    for key, value in node.items():
        names += option_names(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]
    return names


def parse(name: str, argv: list[str], more: str = "") -> DictConfig:
    """conf/<name>.yaml with `key=value` arguments merged over it; an unknown key fails listing the known
    (and `more`: the options a command takes besides its own file's)."""
    defaults = OmegaConf.load(CONF / f"{name}.yaml")
    OmegaConf.set_struct(defaults, True)
    try:
        cfg = OmegaConf.merge(defaults, OmegaConf.from_dotlist(argv))
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except ConfigKeyError as error:
        known = ", ".join(option_names(OmegaConf.to_container(defaults)))
        raise BenchmarkError(
            f"{error.full_key} is not an option of benchmark.{name}: use {known}{more}"
        ) from None
    except MissingMandatoryValue as error:
        raise BenchmarkError(f"{error.full_key} is required: add {error.full_key}=<value>") from None
    return cfg


def require_model_run(run: str | None) -> Path:
    """A complete run directory that saved its model, or a user error saying which part is missing and
    what to pass instead (a failed run's reason, an ensemble's member runs). Complete as the sweep counts
    it (layout.is_complete's rule), so a corrupt metrics.json is one line here, not a traceback."""
    from benchmark.runs.layout import incomplete_reason

    if not run:  # `run=` given empty (e.g. a shell variable that was not set)
        raise BenchmarkError("run= is empty: pass a run directory, "
                             "e.g. run=results/runs/synthetic/mobilenetv2/seed0-<hash>")
    run_dir = Path(run).expanduser()
    if not run_dir.is_dir():
        raise BenchmarkError(f"run {run_dir} is not a folder: pass a run directory, "
                             "e.g. run=results/runs/synthetic/mobilenetv2/seed0-<hash>")
    if problem := incomplete_reason(run_dir):
        if (run_dir / "failed.json").is_file():
            raise BenchmarkError(failed_run(run_dir))
        if not (run_dir / "metrics.json").exists() and (inside := run_inside(run_dir)):
            raise BenchmarkError(f"run {run_dir} is a folder of runs, not a run: pass one run directory, "
                                 f"e.g. run={inside}")
        fix = "finish it first" if problem == "no metrics.json" else "train it again with the same options"
        raise BenchmarkError(f"run {run_dir} is not a complete run ({problem}): {fix}")
    if is_ensemble(run_dir):
        raise BenchmarkError(ensemble_run(run_dir))
    if not has_model(run_dir):
        raise BenchmarkError(
            f"run {run_dir} has no model.keras or head.keras: re-run it with train.save_model=true"
        )
    return run_dir


def has_model(run_dir: Path) -> bool:
    """A fine-tuned run's model.keras or a frozen run's head.keras (`load_model` reads either)."""
    return (run_dir / "model.keras").is_file() or (run_dir / "head.keras").is_file()


def run_inside(folder: Path) -> Path | None:
    """The first complete run with a model in `folder` given as a results folder, its `runs/`, a dataset's or
    a backbone's folder (the layout's fixed depths, sorted, no staging folder or ensemble): the example a
    user who passed such a folder is shown."""
    from benchmark.runs.layout import is_complete, runs_root

    for base, pattern in ((runs_root(folder), "*/*/*"), (folder, "*/*/*"), (folder, "*/*"), (folder, "*")):
        for path in sorted(base.glob(pattern)):
            hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
            if not hidden and has_model(path) and not is_ensemble(path) and is_complete(path):
                return path
    return None


def failed_run(run_dir: Path) -> str:
    """A failed sweep cell has no model to finish: its recorded reason (first line) and where the rest is."""
    from benchmark.files import read_json

    try:
        record = read_json(run_dir / "failed.json")
        error = str(record.get("error") or "").strip().splitlines()
        reason = f"{record.get('error_type') or 'error'}: {error[0] if error else 'no message recorded'}"
    except (OSError, ValueError, AttributeError):  # a damaged record still says the run failed
        reason = "its failed.json cannot be read"
    return (f"run {run_dir} failed, so it has no model ({reason}): fix what that names and train it again "
            f"(the traceback is in {run_dir / 'failed.json'})")


def is_ensemble(run_dir: Path) -> bool:
    """An ensemble's folder (runs/<dataset>/ensemble/top<k>-<hash>): averaged probabilities, no model."""
    from benchmark.files import read_json
    from benchmark.runs.layout import ENSEMBLE

    if run_dir.resolve().parent.name == ENSEMBLE:
        return True
    try:
        return read_json(run_dir / "metrics.json").get("train_mode") == ENSEMBLE
    except (OSError, ValueError, AttributeError):
        return False


def ensemble_members(run_dir: Path) -> list[Path]:
    """The member run directories an ensemble averaged (its manifest.json, relative to the results)."""
    from benchmark.files import read_json
    from benchmark.runs.layout import results_dir_of

    try:
        members = read_json(run_dir / "manifest.json").get("members") or []
    except (OSError, ValueError, AttributeError):
        return []
    return [results_dir_of(run_dir) / str(member) for member in members]


def ensemble_run(run_dir: Path, shown: int = 3) -> str:
    """An ensemble is not a saved model: name the member runs that are, to pass one of them instead."""
    members = ensemble_members(run_dir)
    named = ", ".join(map(str, members[:shown])) + (f" and {len(members) - shown} more" if
                                                   len(members) > shown else "")
    where = f"pass one of its member runs instead: {named}" if members else (
        "pass one of its member runs instead (its manifest.json lists them)")
    return f"run {run_dir} is an ensemble (averaged probabilities of other runs), not a saved model: {where}"


def require_run_data(run_dir: Path, dataset_cfg: DictConfig, why: str) -> None:
    """The run's own images, where its config.yaml says they are; the commands that use a finished run
    have no dataset.path option, so a folder that moved is named with the fixes they can take (and a
    dataset.dedupe edited in its config.yaml as such)."""
    from benchmark.data import check_data_path
    from benchmark.data.audit import check_dedupe

    try:  # a bad value here is an edited config.yaml, not a moved folder
        check_dedupe(dataset_cfg.get("dedupe", "warn"))
    except BenchmarkError as error:
        raise BenchmarkError(
            f"run {run_dir}'s config.yaml: {error}: put back the value it was trained with, or train the "
            "run again"
        ) from None
    try:
        check_data_path(dataset_cfg)
    except BenchmarkError:
        raise BenchmarkError(
            f"run {run_dir}'s images are no longer at dataset.path={dataset_cfg.get('path')} (its "
            f"config.yaml; {why}): move them back there, or train the run again with "
            "dataset.path=<where they are now>"
        ) from None


def require_count(key: str, value: object, minimum: int, example: int) -> int:
    """A whole-number option at least `minimum` (true/false and 2.5 are not counts), else one line."""
    if not whole(value, minimum):
        raise BenchmarkError(
            f"{key}={value} must be a whole number of at least {minimum}: e.g. {key}={example}"
        )
    return value


def load_model(run_dir: Path):
    """The run's model, raw pixels in, probabilities out: its model.keras, or (a frozen run) the extractor
    its backbone's runs share with its own head.keras (the Preprocess layer registered first)."""
    import keras

    import backbones.preprocess  # noqa: F401  registers the Preprocess layer inside the files
    import benchmark.train.probes  # noqa: F401  registers the kNN probe's vote layer
    from benchmark.files import read_json
    from benchmark.runs.layout import is_saved_model, results_dir_of
    from benchmark.train.head import assemble

    if (run_dir / "model.keras").is_file():
        return keras.models.load_model(run_dir / "model.keras")
    metrics = read_json(run_dir / "metrics.json")
    shared = metrics.get("extractor_file")
    candidates = [results_dir_of(run_dir) / str(shared), Path(str(metrics.get("extractor_path")))]
    extractor_file = next((path for path in candidates if shared and is_saved_model(path)), candidates[0])
    if not is_saved_model(extractor_file):
        raise BenchmarkError(
            f"run {run_dir} saved its head but its extractor {extractor_file} is missing (the results folder "
            "was copied without extractors/?): copy that folder too, or re-run the run with force=true"
        )
    head = keras.models.load_model(run_dir / "head.keras")
    layers = [layer for layer in head.layers if not isinstance(layer, keras.layers.InputLayer)]
    return assemble(keras.models.load_model(extractor_file), layers)


def main(
    name: str, work: Callable[[DictConfig], object], argv: list[str] | None = None, more: str = ""
) -> object:
    """Run `work` on the parsed config; user errors end the process with one line and exit 2. `more`: see
    `parse`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    debug = "debug=true" in argv
    try:
        done = or_fail(lambda: work(parse(name, argv, more)), debug)
        sys.stdout.flush()  # here, not at exit: a closed pipe is then caught below
        return done
    except BrokenPipeError:  # stdout piped into a reader that stopped (`| head`): what Python's docs advise
        if debug:
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        raise SystemExit(1) from None
