"""Resolve `backbone.weights` into a built backbone, and record honestly which weights were used.

ImageNet weights come from Keras's own download and cache (~/.keras/models). Offline, the download
fails: `backbone.weights_fallback` then decides between a loud, recorded switch to random init and an
error before any work. The experiment never changes silently.
"""

import logging
import os
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path

import h5py
import keras
import numpy as np
from omegaconf import DictConfig

from backbones.identity import (
    IMAGENET_UNAVAILABLE,
    check_weights_file,
    weights_file,
    weights_id_of_file,
)
from backbones.keras2_h5 import assign_by_name, is_keras2_h5
from backbones.registry import BackboneSpec, build
from backbones.seeding import seed_run
from benchmark.errors import BenchmarkError

log = logging.getLogger(__name__)
VERIFY_SEED = 0x5EED_F11E  # initial values a loaded file must overwrite (checked after loading)
DOWNLOAD_FAILED: list[str] = []  # the first failed ImageNet download of this process, if any
WEIGHTS_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/"  # where Keras downloads from


@dataclass
class LoadedBackbone:
    """Which weights a run uses, known before the network is built; `model` builds it on first use, so
    a frozen run whose features and extractor are cached never builds it at all."""

    make: Callable[[], keras.Model] = field(repr=False)
    weights_used: str  # what the leaderboard shows: imagenet, random, random (imagenet unavailable), file:...
    weights_id: str  # what feature caches are keyed on
    is_random: bool = False  # random init (asked for, or the offline fallback)

    @cached_property
    def model(self) -> keras.Model:
        return self.make()

    @property
    def built(self) -> bool:
        return "model" in self.__dict__


def ready(model: keras.Model) -> Callable[[], keras.Model]:
    return lambda: model


def build_random(spec: BackboneSpec, image_size: int, init_seed: int) -> keras.Model:
    """Random init from a fixed seed, so every run seed shares the same frozen features."""
    seed_run(init_seed)
    return build(spec, image_size, None)


def kernels(layer: keras.layers.Layer) -> list[np.ndarray]:
    """A layer's randomly initialised weights (kernels, ndim >= 2): loading must change every one of them."""
    return [np.asarray(w) for w in layer.weights if len(w.shape) >= 2]


def from_file(spec: BackboneSpec, image_size: int, path: Path) -> LoadedBackbone:
    """A Keras 3 `.weights.h5` file (or `.keras` archive), or a Keras 2 HDF5 file (RadImageNet's), checked
    to fill every layer."""
    if damage := file_damage(path):
        raise BenchmarkError(
            f"backbone.weights={path} is truncated or corrupt ({damage}): download it again, or save it "
            "again from the model"
        )
    model = (load_keras2_file if is_keras2_h5(path) else load_keras3_file)(spec, image_size, path)
    weights_id = weights_id_of_file(path)
    return LoadedBackbone(ready(model), f"file:{path.name} (sha256 {weights_id[5:17]})", weights_id)


def file_damage(path: Path) -> str | None:
    """Why a weights file cannot be read (cut short or corrupted by a download or a copy), else None:
    checked before loading, so that such a file is not blamed on its architecture or image size."""
    if path.suffix.lower() == ".keras":
        return archive_damage(path)
    if path.suffix.lower() in (".h5", ".hdf5"):
        return hdf5_damage(path)
    return None


def hdf5_damage(path: Path) -> str | None:
    """A cut-off file or a damaged object header. HDF5 keeps no checksum of the weights themselves (not
    written chunked with fletcher32), so a change inside them reads back as other values: reading every
    dataset would find nothing more."""
    try:
        with h5py.File(path, "r") as f:
            f.visit(lambda name: None)  # every object header, not only the superblock
    except OSError as error:
        return " ".join(str(error).split())[:300]
    return None


def archive_damage(path: Path) -> str | None:
    """A `.keras` archive cut short (no zip directory at its end) or changed anywhere inside: each member
    is read once against the CRC-32 the zip format records for it (Keras raised zipfile's BadZipFile as a
    traceback)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        return " ".join(str(error).split())[:300]
    return None if bad is None else f"bad CRC-32 for {bad} inside the archive"


def load_keras2_file(spec: BackboneSpec, image_size: int, path: Path) -> keras.Model:
    """By layer name (keras2_h5); refused unless every weight of every layer gets a value of its shape."""
    model = build(spec, image_size, None)
    problems, unused = assign_by_name(model, path)
    if problems:
        examples = ", ".join(problems[:4]) + (", ..." if len(problems) > 4 else "")
        raise BenchmarkError(
            f"backbone.weights={path} does not cover {spec.name}: {len(problems)} of its layers or weights "
            f"are missing or misshapen ({examples}): use a no-top {spec.name} file (include_top=False)"
        )
    if unused:
        log.info(
            "%s: %d weighted layers not part of %s without its top were ignored (%s)",
            path.name,
            len(unused),
            spec.name,
            ", ".join(unused[:4]),
        )
    return model


def load_keras3_file(spec: BackboneSpec, image_size: int, path: Path) -> keras.Model:
    """By structure (Keras's own loader); refused when any layer kept its initial kernels."""
    seed_run(VERIFY_SEED)
    model = build(spec, image_size, None)
    initial = {layer.name: [np.array(k) for k in kernels(layer)] for layer in model.layers if kernels(layer)}
    try:
        model.load_weights(str(path))
    except (ValueError, OSError) as error:
        reason = " ".join(str(error).split())[:300]
        raise BenchmarkError(
            f"backbone.weights={path} does not fit {spec.name} without its top at {image_size}px ({reason}); "
            "save the file from the same architecture with include_top=False"
        ) from None
    untouched = [
        name
        for name, before in initial.items()
        if all(np.array_equal(a, b) for a, b in zip(before, kernels(model.get_layer(name)), strict=True))
    ]
    if untouched:
        examples = ", ".join(untouched[:4]) + (", ..." if len(untouched) > 4 else "")
        raise BenchmarkError(
            f"backbone.weights={path} loaded only partly: {len(untouched)} of {len(initial)} {spec.name} "
            f"layers kept their initial weights ({examples}): the file is incomplete or from another "
            "architecture; save it again from the whole backbone"
        )
    return model


def keras_cached(spec: BackboneSpec) -> bool:
    """Whether Keras's cache already holds this backbone's ImageNet file (no download needed): its files
    are named like `mobilenet_v2_weights_..._no_top.h5`, the registry name without the underscores."""
    folder = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    names = [p.name.replace("_", "") for p in folder.glob("*.h5")] if folder.is_dir() else []
    return any(name.startswith(spec.name) and "notop" in name for name in names)


def origin_unreachable(timeout_s: float = 10.0) -> str | None:
    """Why Keras's weights server cannot be reached (None when it answers at all, even with an error
    status): a HEAD request is a second where building a network only to fail its download took several."""
    try:
        urllib.request.urlopen(urllib.request.Request(WEIGHTS_ORIGIN, method="HEAD"), timeout=timeout_s)
    except urllib.error.HTTPError:
        return None  # the server answered
    except (urllib.error.URLError, OSError) as error:
        return f"cannot reach {WEIGHTS_ORIGIN} ({getattr(error, 'reason', error)})"
    return None


def from_imagenet(spec: BackboneSpec, image_size: int, cfg: DictConfig) -> LoadedBackbone:
    """`backbone.weights_fallback` is one of FALLBACKS (runs.settings checks it before any work)."""
    if keras_cached(spec):  # the file is here: no download, and no need to build before it is used
        return LoadedBackbone(lambda: build(spec, image_size, "imagenet"), "imagenet", "imagenet")
    warned_before = bool(DOWNLOAD_FAILED)  # this process said it all once already
    if not DOWNLOAD_FAILED and (unreachable := origin_unreachable()):
        DOWNLOAD_FAILED[:] = [unreachable]  # offline: found in a second, without building the network
        reason = unreachable
    elif DOWNLOAD_FAILED:  # offline: one failed download per process is enough
        reason = f"{DOWNLOAD_FAILED[0]} (earlier in this process; not retried)"
    else:
        try:
            return LoadedBackbone(ready(build(spec, image_size, "imagenet")), "imagenet", "imagenet")
        except Exception as error:  # keras raises a bare Exception for a failed download
            reason = str(error).splitlines()[0][:300]
            DOWNLOAD_FAILED[:] = [reason]
    hint = (
        "download once with network access (Keras caches it in ~/.keras/models), or pass "
        "backbone.weights=<file>.weights.h5, or backbone.weights=null for an explicit random-init baseline"
    )
    if cfg.weights_fallback == "error":
        raise BenchmarkError(f"ImageNet weights for {spec.name} are unavailable ({reason}): {hint}")
    if warned_before:  # a sweep's next cells get one line each
        log.warning(
            "ImageNet weights for %s are UNAVAILABLE too (%s): RANDOM INIT, recorded as %r, NOT transfer "
            "learning (the fix: see the first warning).", spec.name, reason, IMAGENET_UNAVAILABLE,
        )
    else:
        log.warning("=" * 78)
        log.warning("ImageNet weights for %s are UNAVAILABLE (%s).", spec.name, reason)
        log.warning(
            "Continuing from RANDOM INIT (backbone.weights_fallback=random); recorded as %r.",
            IMAGENET_UNAVAILABLE,
        )
        log.warning("These results are NOT transfer learning. To fix: %s.", hint)
        log.warning("=" * 78)
    make = partial(build_random, spec, image_size, cfg.init_seed)
    return LoadedBackbone(make, IMAGENET_UNAVAILABLE, f"random-{cfg.init_seed}", is_random=True)


def load_backbone(spec: BackboneSpec, image_size: int, cfg: DictConfig) -> LoadedBackbone:
    """The convolutional base with the weights `backbone.weights` asks for (or an honest fallback)."""
    weights = cfg.weights
    if weights is None:
        make = partial(build_random, spec, image_size, cfg.init_seed)
        return LoadedBackbone(make, "random", f"random-{cfg.init_seed}", is_random=True)
    if str(weights) == "imagenet":
        return from_imagenet(spec, image_size, cfg)
    check_weights_file(cfg)
    return from_file(spec, image_size, weights_file(cfg))
