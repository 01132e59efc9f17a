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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The run's test pixels, true labels and probabilities, checked to be in predictions.csv's order."""
    from benchmark.data import load_dataset
    from benchmark.data.pixels import split_pixels
    from benchmark.metrics.predictions import labels_of, probabilities_of, read_predictions

    classes = list(metrics["classes"])
    predictions = read_predictions(run_dir / "predictions.csv")
    dataset = load_dataset(run_cfg.dataset, Path(run_cfg.data_dir), Path(run_cfg.cache_dir))
    if predictions["file"].tolist() != list(dataset.splits["test"].ids):
        raise BenchmarkError(
            f"predictions.csv of {run_dir} does not list the test split of {dataset.name!r} in order: "
            "the data changed since the run; re-run it with force=true"
        )
    pixels = split_pixels(dataset, "test", int(metrics["image_size"]), Path(run_cfg.cache_dir))
    return pixels, labels_of(predictions, classes), probabilities_of(predictions, classes).astype(np.float32)


def explain_run(cfg: DictConfig) -> dict:
    """Explain a finished run: <run>/gradcam.png, and the two keys added to its metrics.json."""
    from benchmark.figures.gradcam import Overlay
    from benchmark.saliency.explain import explain

    run_dir = cli.require_model_run(cfg.run)
    metrics = read_json(run_dir / "metrics.json")
    pixels, y_true, probabilities = load_test_split(run_dir, OmegaConf.load(run_dir / "config.yaml"), metrics)
    model = cli.load_model(run_dir)
    scores = explain(
        model,
        pixels,
        y_true,
        probabilities,
        list(metrics["classes"]),
        metrics["backbone"],
        cfg.n_images,
        cfg.seed,
        run_dir / "gradcam.png",
        Overlay(**cfg.figure),
    )
    if scores:
        write_json(run_dir / "metrics.json", {**read_json(run_dir / "metrics.json"), **scores})
    return scores


def main(argv: list[str] | None = None) -> dict:
    return cli.main("explain", explain_run, argv)


if __name__ == "__main__":
    main()
