"""`python -m benchmark [overrides]`: compose the Hydra config, run once, report errors in one line."""

import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's C++ start-up chatter out of the log

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from omegaconf.errors import MissingMandatoryValue  # noqa: E402

from benchmark.errors import BenchmarkError  # noqa: E402

log = logging.getLogger("benchmark")


def user_error(error: Exception) -> str:
    if isinstance(error, MissingMandatoryValue):
        key = error.full_key
        return f"{key} is required: add {key}=<value> to the command (e.g. dataset=folder dataset.path=/data/ct)"
    return str(error)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Run one configuration; the returned metric lets Hydra sweepers optimise over runs."""
    from benchmark.run import run  # heavy imports (TensorFlow) only once the config is valid

    try:
        return run(cfg)["macro_auroc"]
    except (BenchmarkError, MissingMandatoryValue) as error:
        if cfg.get("debug"):
            raise
        log.error("error: %s", user_error(error))
        print(f"error: {user_error(error)}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
