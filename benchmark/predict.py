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
from benchmark.data.images import IMAGE_KINDS, BadImage, DecodeOptions, decode_file, images_below
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
    """The temperature the run fitted on its validation split; a run without one cannot calibrate, and
    one whose fit stopped at the search's bound is refused: that value is the search's limit, not an
    estimate (README), so its "calibrated" confidences would be an artefact (T=20 pulls every prediction
    towards 1/k) that a warning on stderr would not follow into a saved csv or json."""
    from benchmark.metrics.calibration import bound_range, recorded_temperature

    calibration = metrics.get("calibration") or {}
    if (value := recorded_temperature(calibration)) is None:
        raise BenchmarkError(
            f"run={run_dir} recorded no temperature (made before calibration was part of a run): re-run it "
            "with force=true, or predict with calibrated=false"
        )
    if bounds := bound_range(calibration):
        low, high = bounds
        raise BenchmarkError(
            f"the temperature of run={run_dir}, {value:.3g}, stopped at the bound of its search "
            f"[{low:g}, {high:g}], so it is no estimate (its validation predictions are degenerate, e.g. "
            "no better than chance): predict with calibrated=false"
        )
    return value


def check_options(cfg: DictConfig) -> None:
    """The options, before any image or model is read: a typo must not cost a model load, nor pass as
    true (calibrated=maybe applied the temperature)."""
    if cfg.format not in FORMATS:
        raise BenchmarkError(f"format={cfg.format} is unknown: use one of {', '.join(FORMATS)}")
    if not isinstance(cfg.calibrated, bool):
        raise BenchmarkError(
            f"calibrated={cfg.calibrated} is not true or false: use calibrated=true (apply the run's "
            "validation temperature) or calibrated=false"
        )
    cli.require_count("batch_size", cfg.batch_size, minimum=1, example=32)


def input_files(path: Path) -> list[Path]:
    """One image, or every image below a folder (sorted)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise BenchmarkError(f"input={path} does not exist: pass an image file or a folder of images")
    files = images_below(path)
    if not files:
        raise BenchmarkError(f"input={path} holds no images ({IMAGE_KINDS})")
    return files


def decoded(files: list[Path], image_size: int, options: DecodeOptions, one_image: bool):
    """The files that decode and their pixels. In a folder an unreadable file is skipped with one warning
    line listing them all, as training skips them (dataset.on_bad_image=skip), so one bad file does not
    stop the batch; an image named alone, or a folder of nothing readable, is an error."""
    kept, pixels, bad = [], [], []
    for path in files:
        try:
            pixels.append(decode_file(path, image_size, options))
            kept.append(path)
        except BadImage as error:
            if one_image:
                raise
            bad.append(str(error).removeprefix("cannot read image "))
    if not kept:
        raise BenchmarkError(f"none of the {len(files)} images can be read: {'; '.join(bad)}")
    if bad:
        log.warning("skipping %d unreadable image(s), not in the output: %s", len(bad), "; ".join(bad))
    return kept, np.stack(pixels).astype(np.float32)


def predict(cfg: DictConfig) -> pd.DataFrame:
    """Per-image class probabilities, the predicted class, its confidence and the predictive entropy
    (the predictions table of benchmark/metrics/predictions.py, without a true label)."""
    check_options(cfg)
    files = input_files(Path(cfg.input))
    model, metrics, image_size, options = load_run(cfg.run)
    temperature = temperature_of(metrics, str(cfg.run)) if cfg.calibrated else None
    files, pixels = decoded(files, image_size, options, one_image=Path(cfg.input).is_file())
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
