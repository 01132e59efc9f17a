"""`python -m benchmark.predict run=<run dir> input=<image|folder|.dcm> [format=...] [calibrated=true]`.

The saved model holds the backbone's own preprocessing, and images are decoded by the same function
as in training at the run's image size, so a prediction sees exactly what the test split saw.
"""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from benchmark import cli
from benchmark.data.images import IMAGE_KINDS, DecodeOptions, decode_file, is_image_file
from benchmark.errors import BenchmarkError
from benchmark.files import read_json
from benchmark.metrics.calibration import apply_temperature
from benchmark.metrics.predictions import predictions_frame

log = logging.getLogger(__name__)
FORMATS = ("table", "json", "csv")


def load_run(run_dir: str):
    """The run's model, metrics, input size and decoding; a run that cannot predict says why."""
    run_dir = cli.require_model_run(run_dir)
    metrics = read_json(run_dir / "metrics.json")
    options = DecodeOptions.from_config(OmegaConf.load(run_dir / "config.yaml").dataset)
    return cli.load_model(run_dir), metrics, int(metrics["image_size"]), options


def temperature_of(metrics: dict, run_dir: str) -> float:
    """The temperature the run fitted on its validation split; a run without one cannot calibrate."""
    value = (metrics.get("calibration") or {}).get("temperature")
    if not isinstance(value, int | float) or value <= 0:
        raise BenchmarkError(
            f"run={run_dir} recorded no temperature (made before calibration was part of a run): re-run it "
            "with force=true, or predict with calibrated=false"
        )
    return float(value)


def input_files(path: Path) -> list[Path]:
    """One image, or every image below a folder (sorted)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise BenchmarkError(f"input={path} does not exist: pass an image file or a folder of images")
    files = sorted(
        p
        for p in path.rglob("*")
        if is_image_file(p) and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise BenchmarkError(f"input={path} holds no images ({IMAGE_KINDS})")
    return files


def predict(cfg: DictConfig) -> pd.DataFrame:
    """Per-image class probabilities, the predicted class, its confidence and the predictive entropy
    (the predictions table of benchmark/metrics/predictions.py, without a true label)."""
    if cfg.format not in FORMATS:
        raise BenchmarkError(f"format={cfg.format} is unknown: use one of {', '.join(FORMATS)}")
    files = input_files(Path(cfg.input))
    model, metrics, image_size, options = load_run(cfg.run)
    temperature = temperature_of(metrics, str(cfg.run)) if cfg.calibrated else None
    pixels = np.stack([decode_file(f, image_size, options) for f in files]).astype(np.float32)
    probabilities = model.predict(pixels, batch_size=cfg.batch_size, verbose=0)
    if temperature is not None:
        probabilities = apply_temperature(probabilities, temperature)
    return predictions_frame(files, probabilities, list(metrics["classes"]))


def render(table: pd.DataFrame, fmt: str) -> str:
    if fmt == "json":
        return table.to_json(orient="records", indent=2)
    if fmt == "csv":
        return table.to_csv(index=False).rstrip("\n")
    return table.to_string(index=False, float_format=lambda v: f"{v:.4f}")


def work(cfg: DictConfig) -> None:
    print(render(predict(cfg), cfg.format))


if __name__ == "__main__":
    cli.main("predict", work)
