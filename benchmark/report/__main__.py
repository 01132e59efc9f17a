"""`python -m benchmark.report [overrides]`: compose conf/report.yaml, build the report, one-line errors."""

import logging
import os
from pathlib import Path

os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # let config errors reach `cli` instead of Hydra's exit(1)

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from benchmark.cli import or_fail, run_hydra  # noqa: E402  the same errors as `python -m benchmark`

log = logging.getLogger("benchmark.report")


def leave_no_log_folder(results_dir: str) -> None:
    """A `results_dir` without runs/ (a typo: the report then fails) keeps nothing of this command: Hydra
    made its log folder there before any check could run. Only that file and the folders it leaves empty
    go."""
    from hydra.core.hydra_config import HydraConfig

    results = Path(results_dir).resolve()
    output = Path(HydraConfig.get().runtime.output_dir).resolve()
    if (results / "runs").is_dir() or not output.is_relative_to(results):
        return
    for handler in logging.getLogger().handlers[:]:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == output:
            logging.getLogger().removeHandler(handler)
            handler.close()
            Path(handler.baseFilename).unlink(missing_ok=True)
    for folder in (output, *output.parents):
        if not folder.is_relative_to(results) or any(folder.iterdir()):
            break
        folder.rmdir()


@hydra.main(version_base="1.3", config_path="../../conf", config_name="report")
def main(cfg: DictConfig) -> None:
    from benchmark.report.build import build_report

    leave_no_log_folder(cfg.results_dir)
    log.info("leaderboard: %s", or_fail(lambda: build_report(cfg), debug=cfg.debug))


if __name__ == "__main__":
    run_hydra(main)
