"""`python -m benchmark.ensemble [k=3] [dataset=...]`: build the top-k ensemble of each dataset now.

`make report` builds it too (ensemble_k); the logic lives in benchmark/report/ensemble.py.
"""

from pathlib import Path

from omegaconf import DictConfig

from benchmark import cli


def work(cfg: DictConfig) -> list[Path]:
    from benchmark.report.ensemble import build_ensembles

    return build_ensembles(Path(cfg.results_dir), cfg.k, cfg.dataset)


if __name__ == "__main__":
    cli.main("ensemble", work)
