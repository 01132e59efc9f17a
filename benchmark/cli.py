"""Small `key=value` command lines (predict, explain) without Hydra's output folders.

Defaults come from conf/<name>.yaml; an unknown key, a missing required value or a BenchmarkError
becomes one `error:` line on stderr and exit status 2, like `python -m benchmark`.
"""

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from benchmark.errors import BenchmarkError

CONF = Path(__file__).resolve().parents[1] / "conf"


def one_line(error: Exception) -> str:
    """A user error as one line that names the problem and, where Hydra knows them, the valid options."""
    if isinstance(error, MissingMandatoryValue):
        key = error.full_key
        return f"{key} is required: add {key}=<value> (e.g. dataset=folder dataset.path=/data/ct)"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    options = getattr(error, "options", None)
    message = " ".join(lines[: 1 if options else 2]) if lines else type(error).__name__
    return f"{message} (choose one of: {', '.join(options)})" if options else message


def fail(error: Exception) -> None:
    """Print the one `error:` line and exit with status 2."""
    print(f"error: {one_line(error)}", file=sys.stderr)
    raise SystemExit(2) from None


def run_hydra(main: Callable[[], object]) -> None:
    """Run a @hydra.main function; Hydra's own errors (bad override, unknown option) become one line."""
    from hydra.errors import HydraException

    try:
        main()
    except (HydraException, OmegaConfBaseException) as error:
        fail(error)


def option_names(node: dict, prefix: str = "") -> list[str]:
    """Every settable key, dotted: run, n_images, ..., figure.alpha, ..."""
    names = []
    for key, value in node.items():
        names += option_names(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]
    return names


def parse(name: str, argv: list[str]) -> DictConfig:
    """conf/<name>.yaml with `key=value` arguments merged over it; an unknown key fails listing the known."""
    defaults = OmegaConf.load(CONF / f"{name}.yaml")
    OmegaConf.set_struct(defaults, True)
    try:
        cfg = OmegaConf.merge(defaults, OmegaConf.from_dotlist(argv))
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except ConfigKeyError as error:
        known = ", ".join(option_names(OmegaConf.to_container(defaults)))
        raise BenchmarkError(f"{error.full_key} is not an option of benchmark.{name}: use {known}") from None
    except MissingMandatoryValue as error:
        raise BenchmarkError(f"{error.full_key} is required: add {error.full_key}=<value>") from None
    return cfg


def require_model_run(run: str) -> Path:
    """A complete run directory that saved its model, or a user error saying which part is missing."""
    run_dir = Path(run).expanduser()
    if not run_dir.is_dir():
        raise BenchmarkError(f"run {run_dir} is not a folder: pass a run directory, "
                             "e.g. run=results/runs/synthetic/mobilenetv2/seed0-<hash>")
    if not (run_dir / "metrics.json").is_file():
        raise BenchmarkError(f"run {run_dir} is not a complete run (no metrics.json): finish it first")
    if not (run_dir / "model.keras").is_file():
        raise BenchmarkError(f"run {run_dir} has no model.keras: re-run it with train.save_model=true")
    return run_dir


def main(name: str, work: Callable[[DictConfig], object], argv: list[str] | None = None) -> object:
    """Run `work` on the parsed config; user errors end the process with one line and exit 2."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    try:
        return work(parse(name, argv))
    except BenchmarkError as error:
        if "debug=true" in argv:
            raise
        fail(error)
