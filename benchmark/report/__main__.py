"""`python -m benchmark.report [overrides]`: compose conf/report.yaml, build the report, one-line errors."""

import logging
import os

os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # let config errors reach `cli` instead of Hydra's exit(1)

import hydra  # noqa: E402
from hydra.errors import HydraException  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402

from benchmark.__main__ import fail, one_line  # noqa: E402  the same one-line error as `python -m benchmark`
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
        log.error("error: %s", one_line(error))
        fail(error)


def cli() -> None:
    """Hydra's own errors (bad override, unknown key) become the same one-line exit 2."""
    try:
        main()
    except (HydraException, OmegaConfBaseException) as error:
        fail(error)


if __name__ == "__main__":
    cli()
