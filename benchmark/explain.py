"""`python -m benchmark.explain run=<run dir> [n_images=8] [seed=0]`: Grad-CAM of a finished run, again.

Writes <run>/gradcam.png and adds gradcam_images and gradcam_randomization_spearman to its metrics.json.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from benchmark import cli
from benchmark.errors import BenchmarkError
from benchmark.files import read_json, write_json
from benchmark.runs.identity import WITHOUT_GRADCAM
from benchmark.runs.settings import fraction


@dataclass(frozen=True)
class TestSplit:
    """A finished run's test images, in predictions.csv's order, and what it predicted for them."""

    pixels: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray
    ids: list[str]
    data_fingerprint: str


def load_test_split(run_dir: Path, run_cfg: DictConfig, metrics: dict) -> TestSplit:
    """The run's test split, checked to be in predictions.csv's order."""
    from benchmark.data import load_dataset
    from benchmark.data.pixels import split_pixels
    from benchmark.metrics.predictions import labels_of, probabilities_of, read_predictions

    classes = list(metrics["classes"])
    predictions = read_predictions(run_dir / "predictions.csv")
    dataset = load_dataset(run_cfg.dataset, Path(run_cfg.data_dir), Path(run_cfg.cache_dir))
    ids = list(dataset.splits["test"].ids)
    if predictions["file"].tolist() != ids:
        raise BenchmarkError(
            f"predictions.csv of {run_dir} does not list the test split of {dataset.name!r} in order: "
            "the data changed since the run; re-run it with force=true"
        )
    pixels = split_pixels(dataset, "test", int(metrics["image_size"]), Path(run_cfg.cache_dir))
    probabilities = probabilities_of(predictions, classes).astype(np.float32)
    return TestSplit(pixels, labels_of(predictions, classes), probabilities, ids, dataset.fingerprint)


def gradcam_pool(run_dir: Path, run_cfg: DictConfig, metrics: dict, test: TestSplit, cfg: DictConfig):
    """The frozen backbone's pooled activations for these settings, if its sweep kept them; else None."""
    from backbones.registry import get
    from benchmark.saliency.pool import pool_path, read_pool

    if not metrics.get("extractor_file") or not (run_dir / "head.keras").is_file():
        return None
    layer, extractor = get(metrics["backbone"]).last_conv_layer, Path(metrics["extractor_file"])
    data = (test.data_fingerprint, test.ids)
    return read_pool(pool_path(Path(run_cfg.cache_dir), extractor, *data, layer, cfg.n_images, cfg.seed))


def check_options(cfg: DictConfig) -> None:
    """The options, before the run's dataset is loaded (n_images=-3 was refused only after it, a colormap
    typo as matplotlib's traceback after the maps were computed)."""
    from matplotlib import colormaps

    cli.require_count("n_images", cfg.n_images, minimum=1, example=8)  # 0 explained nothing, silently
    cli.require_count("seed", cfg.seed, minimum=0, example=0)
    if cfg.figure.colormap not in colormaps:
        raise BenchmarkError(
            f"figure.colormap={cfg.figure.colormap} is not a matplotlib colormap: use e.g. "
            "figure.colormap=jet, viridis, inferno or magma"
        )
    alpha = cfg.figure.alpha
    if not fraction(1)[0](alpha):
        raise BenchmarkError(f"figure.alpha={alpha} must be an opacity from 0 to 1: e.g. figure.alpha=0.4")
    cli.require_count("figure.columns", cfg.figure.columns, minimum=1, example=4)
    cli.require_count("figure.dpi", cfg.figure.dpi, minimum=1, example=120)


def explain_run(cfg: DictConfig) -> dict:
    """Explain a finished run: <run>/gradcam.png, and the keys added to its metrics.json. A frozen run
    whose sweep kept its backbone's pooled activations is explained from them and its head alone."""
    import keras

    from benchmark.figures.gradcam import Overlay
    from benchmark.saliency.explain import explain
    from benchmark.saliency.pool import Pooled

    check_options(cfg)
    run_dir = cli.require_model_run(cfg.run)
    metrics = read_json(run_dir / "metrics.json")
    if (mode := metrics.get("train_mode")) in WITHOUT_GRADCAM:  # its vote layer crashed Grad-CAM's load
        raise BenchmarkError(f"run {run_dir} is train={mode}: Grad-CAM does not apply (a vote of neighbours "
                             "has no class score to differentiate); explain a frozen, linear or finetune run")
    run_cfg = OmegaConf.load(run_dir / "config.yaml")
    cli.require_run_data(run_dir, run_cfg.dataset, "the maps are drawn on its test images")
    test = load_test_split(run_dir, run_cfg, metrics)
    shown = (test.pixels, test.labels, test.probabilities, list(metrics["classes"]), metrics["backbone"])
    drawn = (cfg.n_images, cfg.seed, run_dir / "gradcam.png", Overlay(**cfg.figure))
    pool = gradcam_pool(run_dir, run_cfg, metrics, test, cfg)
    if pool is not None:  # the head alone: the backbone's part of the maps was kept
        explained = Pooled(pool, keras.models.load_model(run_dir / "head.keras"))
    else:
        explained = cli.load_model(run_dir)
    scores = explain(explained, *shown, *drawn)
    if scores:
        write_json(run_dir / "metrics.json", {**read_json(run_dir / "metrics.json"), **scores})
    return scores


def main(argv: list[str] | None = None) -> dict:
    return cli.main("explain", explain_run, argv)


if __name__ == "__main__":
    main()
