"""Decode every image once: is it readable, what are its pixels (exact hash), what does it look like
(256-bit difference hash) and, for DICOM, whose scan is it. The leakage audit and the loaders' bad-image
handling read these records instead of decoding again.

Records are cached on disk per file content and decode options (`<cache_dir>/scan/<options>/<sha256>.json`),
so the second load of a dataset decodes nothing; several processes may write the same entry at once, each
write is atomic and a corrupt entry is rebuilt.
"""

import hashlib
import json
import logging
import os
import struct
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.data.images import BadImage, DecodeOptions, dicom_tags, read_rgb, rescale_to_uint8
from benchmark.files import digest, mark_used, write_json

log = logging.getLogger(__name__)
HASH_SIDE = 16
HASH_BITS = HASH_SIDE * HASH_SIDE
SCAN_VERSION = 2  # bump when what a record holds or how a hash is computed changes: old entries are ignored
FILE_TOKEN = "<file>"  # cached reasons name the file by this token; records name the file actually scanned
# Errors of a decoder on a broken file that read_rgb may not wrap into BadImage (truncated or hostile data).
DECODE_ERRORS = (OSError, ValueError, EOFError, SyntaxError, struct.error, Image.DecompressionBombError)
# Decoding threads. PIL's decoders and sha1 release the GIL (>= 55% of a scan's time in a profile), so two
# threads can overlap them; measured on the 2-core dev box under load 4: no gain and no loss (that box
# gave one process one core even for GIL-free sha1). 1 turns the pool off.
THREADS = 2


@dataclass(frozen=True)
class ScanRecord:
    """What one decode found. reason None: readable (pixel_hash and dhash set); else why it is not."""

    reason: str | None
    pixel_hash: str | None  # sha1 of the decoded RGB array's shape and bytes
    dhash: int | None  # HASH_BITS-bit difference hash of the decoded image (see dhash_of)
    note: str | None  # read_rgb's intensity note ("8-bit", "minmax", "dicom voi")
    dicom: dict[str, str] = field(default_factory=dict, hash=False)  # PatientID, SOPInstanceUID, ...

    @property
    def readable(self) -> bool:
        return self.reason is None

    def to_json(self) -> dict:
        dhash = None if self.dhash is None else f"{self.dhash:0{HASH_BITS // 4}x}"  # hex: JSON loses big ints
        return {"reason": self.reason, "pixel_hash": self.pixel_hash, "dhash": dhash, "note": self.note,
                "dicom": dict(self.dicom)}

    @classmethod
    def from_json(cls, data: dict) -> "ScanRecord":
        dhash = data["dhash"]
        dicom = data.get("dicom") or {}
        if not isinstance(dicom, dict):
            raise ValueError("dicom is not an object")
        return cls(
            reason=data["reason"],
            pixel_hash=data["pixel_hash"],
            dhash=None if dhash is None else int(dhash, 16),
            note=data["note"],
            dicom={str(key): str(value) for key, value in dicom.items()},
        )


def dhash_of(rgb: np.ndarray) -> int:
    """HASH_BITS-bit difference hash: grayscale, area-resized to (HASH_SIDE + 1) x HASH_SIDE, bit set where
    a pixel is darker than its right neighbour (row-major, first bit most significant). Survives
    re-compression and resizing.

    16 x 16 rather than the usual 8 x 8: medical images are alike at 8 x 8. On the synthetic CT slices,
    64-bit hashes of different images came as close as 1 bit (copies: up to 7); with 256 bits, different
    images were >= 48 bits apart and JPEG re-encodes / resized copies <= 27.
    """
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).convert("L")
    small = np.asarray(image.resize((HASH_SIDE + 1, HASH_SIDE), Image.Resampling.BOX), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def pixel_hash_of(rgb: np.ndarray) -> str:
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    return hashlib.sha1(repr(rgb.shape).encode() + rgb.tobytes()).hexdigest()


def record_of(rgb: np.ndarray, note: str | None, dicom: dict[str, str] | None = None) -> ScanRecord:
    return ScanRecord(None, pixel_hash_of(rgb), dhash_of(rgb), note, dict(dicom or {}))


def as_rgb(pixels: np.ndarray) -> np.ndarray:
    """An in-memory image (H, W), (H, W, 1) or (H, W, 3) -> (H, W, 3) uint8, as decode_array maps it."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.dtype != np.uint8:
        pixels = rescale_to_uint8(pixels)
    if pixels.ndim == 2:
        return np.repeat(pixels[..., None], 3, axis=-1)
    return pixels


def scan_arrays(ids: list[str], get_array: Callable[[str], np.ndarray]) -> dict[str, ScanRecord]:
    """Records for in-memory images (MedMNIST): never unreadable, no DICOM tags."""
    return {image_id: record_of(as_rgb(get_array(image_id)), "8-bit") for image_id in ids}


def scan_one(path: Path, options: DecodeOptions) -> ScanRecord:
    """Decode one file; an unreadable file becomes a record with a reason, never an exception
    (a missing decoder, e.g. pydicom for .dcm, still raises: that is the environment, not the file)."""
    try:
        tags = dicom_tags(path)
    except Exception:  # noqa: BLE001 - a header that cannot be read is simply a file without tags
        tags = {}
    try:
        rgb, note = read_rgb(path, options)
    except BadImage as error:
        return ScanRecord(str(error), None, None, None, tags)
    except DECODE_ERRORS as error:
        return ScanRecord(f"cannot read image {path}: {type(error).__name__}: {error}; remove the file or "
                          "re-export it", None, None, None, tags)
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.size == 0:
        return ScanRecord(f"cannot read image {path}: decoded to shape {rgb.shape}; remove the file or "
                          "re-export it", None, None, None, tags)
    return record_of(rgb, note, tags)


def cache_folder(cache_dir: Path, options: DecodeOptions) -> Path:
    return cache_dir / "scan" / digest(options.record(), SCAN_VERSION)


def cache_entry(folder: Path, sha256: str) -> Path:
    return folder / sha256[:2] / f"{sha256}.json"


def read_entry(path: Path, sha256: str, options: DecodeOptions) -> ScanRecord | None:
    """A cached record, or None when absent or unusable (corrupt, another key, older format)."""
    try:
        data = json.loads(path.read_text())
        mark_used(path)  # read whole: `python -m benchmark.cache` prunes records no run read
        if data["sha256"] != sha256 or data["options"] != options.record() or data["version"] != SCAN_VERSION:
            return None
        return ScanRecord.from_json(data["record"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        log.debug("ignoring unreadable scan cache entry %s", path)
        return None


def write_entry(path: Path, sha256: str, options: DecodeOptions, record: ScanRecord) -> None:
    """One record, its reason naming FILE_TOKEN: the entry serves every file with these bytes."""
    try:
        write_json(path, {"version": SCAN_VERSION, "sha256": sha256, "options": options.record(),
                          "record": record.to_json()})
    except OSError as error:  # a read-only or full cache costs a re-decode next time, not the run
        log.warning("cannot write scan cache %s (%s): images will be decoded again next time", path, error)


def renamed(record: ScanRecord, old: str, new: str) -> ScanRecord:
    """The record with the file its reason names swapped (identical bytes under another name)."""
    if record.reason is None or old not in record.reason:
        return record
    return ScanRecord(record.reason.replace(old, new), None, None, record.note, record.dicom)


def scan_files(
    root: Path,
    ids: list[str],
    file_hashes: dict[str, str],
    options: DecodeOptions,
    cache_dir: Path | None,
) -> dict[str, ScanRecord]:
    """Decode each file `root/id` once (files with the same sha256 once in all) and record what it holds.

    With `cache_dir`, records come from and go to `<cache_dir>/scan/`, keyed by the file's sha256 (from
    `file_hashes`) and the decode options; ids without a hash are decoded and not cached.
    """
    started = time.perf_counter()
    folder = None if cache_dir is None else cache_folder(Path(cache_dir), options)
    if folder is not None:
        mark_used(folder)  # its records are one entry for `python -m benchmark.cache`, dated by the folder
    found: dict[str, ScanRecord] = {}  # key -> record, its reason naming FILE_TOKEN
    todo: dict[str, Path] = {}  # key -> the one file to decode
    key_of: dict[str, str] = {}
    for image_id in ids:
        sha256 = file_hashes.get(image_id)
        key = key_of[image_id] = sha256 if sha256 else f"id:{image_id}"
        if key in found or key in todo:
            continue
        cached = None if folder is None or not sha256 else read_entry(cache_entry(folder, key), key, options)
        if cached is None:
            todo[key] = root / image_id
        else:
            found[key] = cached

    def decode(key: str) -> tuple[str, ScanRecord]:
        file = todo[key]
        record = renamed(scan_one(file, options), str(file), FILE_TOKEN)
        if folder is not None and not key.startswith("id:"):
            write_entry(cache_entry(folder, key), key, options, record)
        return key, record

    keys = list(todo)
    workers = min(THREADS, os.cpu_count() or 1, len(keys))
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            found.update(pool.map(decode, keys))
    else:
        found.update(map(decode, keys))
    if keys or ids:
        log.info("scanned %d image files in %.1fs (%d decoded, the rest from the cache or identical bytes)",
                 len(ids), time.perf_counter() - started, len(keys))
    return {image_id: renamed(found[key_of[image_id]], FILE_TOKEN, str(root / image_id)) for image_id in ids}
