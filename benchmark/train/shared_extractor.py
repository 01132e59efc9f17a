"""The frozen extractor (preprocessing + backbone + pooling), saved once per backbone in a results folder.

Every seed and head configuration of a frozen backbone runs the same extractor, so saving the whole
model with each run stored one copy of the backbone per seed (80 MB each for VGG19). A frozen run saves
its head (`head.keras`) and names the extractor (a Keras model folder, `runs/layout.py`); `cli.load_model`
puts the two together again. It is loaded, or built and saved, only when a run needs the network
(features not cached yet, Grad-CAM, a first timing): a further seed with cached features never builds
its backbone.
"""

import logging
import time
from collections.abc import Callable
from pathlib import Path

import keras

from benchmark.files import digest, first_cause, load_or_remake

log = logging.getLogger(__name__)


def extractor_key(backbone: str, image_size: int, weights_id: str, data_fingerprint: str | None) -> str:
    """What the extractor's weights depend on: the backbone, input size and weights, and for a random-init
    backbone recalibrated on train images (`data_fingerprint`) the data; plus the Keras version."""
    return digest(backbone, image_size, weights_id, data_fingerprint, keras.__version__, length=12)


def shared_extractor(
    path: Path, build: Callable[[], keras.Model], prepare: Callable[[keras.Model], None] | None = None
) -> Callable[[], keras.Model]:
    """A function returning the extractor: read from `path`, or built once and saved there (atomic
    rename, under a lock so two processes never build the same extractor twice), then given to `prepare`.
    Its `path` attribute is where it is saved; `seconds` says how long getting it took (0 until asked for), so
    extraction is timed without it; `in_memory()` whether this process has it already."""
    found: list[keras.Model] = []

    def extractor() -> keras.Model:
        if not found:
            started = time.perf_counter()
            found.append(load_or_build(path, build))
            if prepare:
                prepare(found[0])
            extractor.seconds = time.perf_counter() - started
        return found[0]

    extractor.path, extractor.seconds = path, 0.0
    extractor.in_memory = lambda: bool(found)  # this process has the network now (nothing is loaded)
    return extractor


def load_or_build(path: Path, build: Callable[[], keras.Model]) -> keras.Model:
    """The extractor saved at `path`, or built and saved there when it is missing or damaged; a damaged
    one comes back where its rebuild fails (files.load_or_remake), so the completed runs that name it
    keep what they had."""

    def saved(tmp: Path) -> keras.Model:
        model = build()
        model.save(tmp, zipped=path.suffix == ".keras")  # unzipped: a folder (runs/layout.py)
        log.info("saved the frozen extractor %s (shared by every run of this backbone)", path)
        return model

    return load_or_remake(path, loaded, saved)


def loaded(path: Path) -> keras.Model | None:
    """The saved extractor, or None where the file is damaged (a truncated or corrupt weights file, a
    folder missing half of itself): the caller builds it again. Rebuilding gives the same network, so
    completed runs that name this file still predict their own numbers: everything the weights depend
    on is in its key (`extractor_key`), and building is deterministic (ImageNet's or the file's weights;
    a random init under backbone.init_seed, its BatchNorm recalibrated on the same rows of the same train
    images). Any other failure (out of memory on a GPU) is raised: the file may be intact."""
    import backbones.preprocess  # noqa: F401  registers the Preprocess layer inside the file

    try:
        return keras.models.load_model(path)
    except Exception as error:
        if not damaged(error):
            raise
        log.warning("the frozen extractor %s cannot be loaded (%s): rebuilding", path, first_cause(error))
    return None


def damaged(error: BaseException) -> bool:
    """Whether loading failed on the file itself: an OSError or ValueError anywhere in the chain (h5py's
    'truncated file' or 'file signature not found' behind Keras's UnboundLocalError, a cut-off
    config.json's JSONDecodeError, Keras's 'Expected a model.weights.h5' for a folder without it)."""
    while error is not None:
        if isinstance(error, OSError | ValueError):
            return True
        error = error.__cause__ or error.__context__
    return False

