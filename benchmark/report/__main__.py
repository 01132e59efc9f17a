"""`python -m benchmark.report [overrides]`: compose conf/report.yaml, build the report, one-line errors."""

import logging
import os

os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # let config errors reach `cli` instead of Hydra's exit(1)

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from benchmark.cli import or_fail, run_hydra  # noqa: E402  the same errors as `python -m benchmark`

log = logging.getLogger("benchmark.report")


@hydra.main(version_base="1.3", config_path="../../conf", config_name="report")
def main(cfg: DictConfig) -> None:
    from benchmark.report.build import build_report

    log.info("leaderboard: %s", or_fail(lambda: build_report(cfg), debug=cfg.debug))


if __name__ == "__main__":
    run_hydra(main)
