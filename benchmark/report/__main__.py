"""`python -m benchmark.report [overrides]`: compose conf/report.yaml, build the report, one-line errors."""

import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # let config errors reach `cli` instead of Hydra's exit(1)

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from benchmark.cli import or_fail, run_hydra  # noqa: E402  the same errors as `python -m benchmark`

log = logging.getLogger("benchmark.report")


LOG_FOLDERS = ("hydra", "report")  # conf/report.yaml's hydra.run.dir: <results_dir>/hydra/report/<time>/


def named_results_dirs(argv: list[str]) -> dict[Path, list[Path]]:
    """The results folders this command may write into (its `results_dir=` overrides, or the default), each
    with those of it and its log folders that existed before Hydra made its log folder there."""
    named = [arg.split("=", 1)[1].strip("'\"") for arg in argv if arg.startswith("results_dir=")]
    found = {}
    for name in named or ["results"]:
        results = Path(name).resolve()
        chain = [results.joinpath(*LOG_FOLDERS[:depth]) for depth in range(len(LOG_FOLDERS) + 1)]
        found[results] = [folder for folder in chain if folder.exists()]
    return found


EXISTED_BEFORE = named_results_dirs(sys.argv[1:])


def leave_no_log_folder(results_dir: str) -> None:
    """A `results_dir` without runs/ (a typo: the report then fails) keeps nothing of this command: Hydra
    made its log folder, `<results_dir>/hydra/report/<time>/`, before any check could run. Only its log
    file and the folders it leaves empty go: `results_dir` itself only where this command made it, and
    nothing where Hydra's run folder was set elsewhere."""
    from hydra.core.hydra_config import HydraConfig

    results = Path(results_dir).resolve()
    output = Path(HydraConfig.get().runtime.output_dir).resolve()
    if results not in EXISTED_BEFORE or (results / "runs").is_dir() or output.parent != results.joinpath(
            *LOG_FOLDERS):
        return
    kept = EXISTED_BEFORE[results]  # what existed stays, even empty
    try:
        for handler in logging.getLogger().handlers[:]:
            file = Path(getattr(handler, "baseFilename", "")).resolve()
            if isinstance(handler, logging.FileHandler) and file.parent == output:
                logging.getLogger().removeHandler(handler)
                handler.close()
                file.unlink(missing_ok=True)
        for folder in (output, *output.parents):
            if folder in kept or not folder.is_relative_to(results) or any(folder.iterdir()):
                break
            folder.rmdir()
    except OSError:  # another process writing there: its folders stay
        pass


@hydra.main(version_base="1.3", config_path="../../conf", config_name="report")
def main(cfg: DictConfig) -> None:
    from benchmark.report.build import build_report

    leave_no_log_folder(cfg.results_dir)
    log.info("leaderboard: %s", or_fail(lambda: build_report(cfg), debug=cfg.debug))


if __name__ == "__main__":
    run_hydra(main)
