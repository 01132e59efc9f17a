"""How a weights source is named in results and keyed in caches, and whether loading it can stop a run:
light (no TensorFlow), so a resume check can compare a finished run's weights with the configured ones,
and a process's first run can start work beside TensorFlow's import, before anything heavy is imported."""

from pathlib import Path

from omegaconf import DictConfig

from benchmark.errors import BenchmarkError
from benchmark.files import file_sha256

IMAGENET_UNAVAILABLE = "random (imagenet unavailable)"  # weights_used of a run whose download failed
FALLBACKS = ("random", "error")  # backbone.weights_fallback: ImageNet unavailable -> random init, or stop


def weights_id_of_file(path: Path) -> str | None:
    """What caches and completed runs key a weights file on: its content, not its name."""
    return f"file-{file_sha256(path)}" if path.is_file() else None


def weights_file(backbone: DictConfig) -> Path | None:
    """The file `backbone.weights` names (`~` expanded); None for ImageNet or random init."""
    weights = backbone.weights
    return None if weights is None or str(weights) == "imagenet" else Path(str(weights)).expanduser()


def check_weights_file(backbone: DictConfig) -> None:
    """A weights file that is not there, named before the run imports TensorFlow (a typo then costs ~2 s,
    not TensorFlow's start-up and its log lines first); `weights.load_backbone` checks it again for other
    callers."""
    if (path := weights_file(backbone)) is not None and not path.is_file():
        raise BenchmarkError(
            f"backbone.weights={path} does not exist: pass imagenet, null, or the path of a .weights.h5 "
            "file (Keras 3) or a no-top .h5 model (Keras 2, e.g. RadImageNet)"
        )


def weights_cannot_stop_the_run(backbone: DictConfig) -> bool:
    """Random init, or ImageNet with the random fallback (weights.py's `load_backbone` then always gives a
    network). A weights file that does not fit, or ImageNet unavailable with `weights_fallback=error`,
    stops the run before its data is touched, and such a run must leave nothing written."""
    weights = backbone.weights
    return weights is None or (str(weights) == "imagenet" and backbone.weights_fallback == "random")
