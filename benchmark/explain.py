"""`python -m benchmark.explain run=<run dir> [n_images=8] [seed=0]`: Grad-CAM of a finished run, again.

Writes <run>/gradcam.png and adds gradcam_images and gradcam_randomization_spearman to its metrics.json.
"""

from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from benchmark import cli
from benchmark.errors import BenchmarkError
from benchmark.files import read_json, write_json


def load_test_split(
    run_dir: Path, run_cfg: DictConfig, metrics: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The run's test pixels, true labels, probabilities and image ids, checked to be in predictions.csv's
    order."""
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
    labels, probabilities = labels_of(predictions, classes), probabilities_of(predictions, classes)
    return pixels, labels, probabilities.astype(np.float32), ids


def gradcam_pool(run_dir: Path, run_cfg: DictConfig, metrics: dict, test_ids: list[str], cfg: DictConfig):
    """The frozen backbone's pooled activations for these settings, if its sweep kept them; else None."""
    from backbones.registry import get
    from benchmark.saliency.pool import pool_path, read_pool

    if not metrics.get("extractor_file") or not (run_dir / "head.keras").is_file():
        return None
    layer = get(metrics["backbone"]).last_conv_layer
    extractor = Path(metrics["extractor_file"])
    return read_pool(pool_path(Path(run_cfg.cache_dir), extractor, test_ids, layer, cfg.n_images, cfg.seed))


def explain_run(cfg: DictConfig) -> dict:
    """Explain a finished run: <run>/gradcam.png, and the keys added to its metrics.json. A frozen run
    whose sweep kept its backbone's pooled activations is explained from them and its head alone."""
    import keras

    from benchmark.figures.gradcam import Overlay
    from benchmark.saliency.explain import explain, explain_pooled

    run_dir = cli.require_model_run(cfg.run)
    metrics = read_json(run_dir / "metrics.json")
    run_cfg = OmegaConf.load(run_dir / "config.yaml")
    pixels, y_true, probabilities, test_ids = load_test_split(run_dir, run_cfg, metrics)
    shown = (list(metrics["classes"]), metrics["backbone"], cfg.n_images, cfg.seed, run_dir / "gradcam.png")
    pool = gradcam_pool(run_dir, run_cfg, metrics, test_ids, cfg)
    if pool is not None:
        head = keras.models.load_model(run_dir / "head.keras")
        scores = explain_pooled(pool, head, pixels, y_true, probabilities, *shown, Overlay(**cfg.figure))
    else:
        model = cli.load_model(run_dir)
        scores = explain(model, pixels, y_true, probabilities, *shown, Overlay(**cfg.figure))
    if scores:
        write_json(run_dir / "metrics.json", {**read_json(run_dir / "metrics.json"), **scores})
    return scores


def main(argv: list[str] | None = None) -> dict:
    return cli.main("explain", explain_run, argv)


if __name__ == "__main__":
    main()
