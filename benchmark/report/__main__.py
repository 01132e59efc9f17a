"""`python -m benchmark.report [overrides]`: compose conf/report.yaml, build the report, one-line errors."""

import logging
import os

os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # let config errors reach `cli` instead of Hydra's exit(1)

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from benchmark.cli import fail, run_hydra  # noqa: E402  the same errors as `python -m benchmark`
from benchmark.errors import BenchmarkError  # noqa: E402

log = logging.getLogger("benchmark.report")


@hydra.main(version_base="1.3", config_path="../../conf", config_name="report")
def main(cfg: DictConfig) -> None:
    from benchmark.report.build import build_report

    try:
        log.info("leaderboard: %s", build_report(cfg))
    except BenchmarkError as error:
        if cfg.get("debug"):
            raise
        fail(error)


if __name__ == "__main__":
    run_hydra(main)
