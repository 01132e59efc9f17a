"""Decode one image file into the 8-bit RGB array every backbone expects.

Medical exports come as 16-bit grayscale PNG/TIFF, palette or RGBA PNGs, CMYK or EXIF-rotated JPEGs and
DICOM; each is mapped to 8-bit RGB. `DecodeOptions` (dataset.window / intensity / resize) say how; runs
record them, and `predict` decodes with the run's own options. `read_rgb` also returns a short note of the
intensity mapping it used ("8-bit", "minmax", "percentile", "window lung", "window header (L40 W400)").

DICOM (`window`): stored values become modality units (Hounsfield units for CT) through the rescale
slope/intercept or Modality LUT (`apply_modality_lut`); then a window [L - W/2, L + W/2] maps linearly onto
0..255 with clipping. Presets: lung L-600/W1500, mediastinum 40/400, bone 400/1800, brain 40/80; `header`
is the file's own WindowCenter/WindowWidth (the first pair when multi-valued; a VOI LUT Sequence when it has
no window values; VOILUTFunction is ignored, always linear); `minmax` is the slice's own min..max; `auto`
is `header` when the file has one, else `lung` for Modality CT and `minmax` otherwise. MONOCHROME1 is
inverted after windowing. Colour DICOM (RGB / YBR / PALETTE COLOR) is used as colour; windows don't apply.
Multi-frame DICOM is refused (BadImage): a classifier takes one image per file, and which slices to use is
the user's decision; export them as single-frame files.

Other 16-bit / float images (`intensity`): `minmax` scales the image's own min..max; `percentile` clips to
its 0.5..99.5 percentiles first, so one burned-in bright pixel can't flatten the anatomy to a few grey
levels. 8-bit images are used as stored (palette expanded, transparency composited over black, EXIF
orientation applied as `ImageOps.exif_transpose` would, CMYK converted by PIL, which handles Adobe's
inverted CMYK JPEGs; embedded ICC profiles are not applied).

Huge images: `read_rgb(..., max_side=)` bounds the returned resolution. JPEGs are decoded at a reduced
DCT scale (`draft`), other formats are box-reduced right after decoding, before any RGB or float copy.
PIL's decompression-bomb *warning* is silenced (the output is bounded); its *error* (more than twice
`PIL.Image.MAX_IMAGE_PIXELS`) becomes a BadImage telling the user to downscale the file or raise the limit.
`decode_file` uses max_side = max(4096, 4 * size), so images up to 4096 px decode exactly as before.
"""

import math
import os
import struct
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from benchmark.errors import BenchmarkError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
IMAGE_KINDS = f"{', '.join(sorted(IMAGE_SUFFIXES))} or DICOM files of any name"  # what a listing keeps
_WIDE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "I;16S", "I;32", "F"})
_REDUCIBLE_MODES = frozenset({"L", "LA", "RGB", "RGBA", "CMYK", "I", "F"})  # what Image.reduce accepts

WINDOW_PRESETS: dict[str, tuple[float, float]] = {  # name -> (level, width), in Hounsfield units
    "lung": (-600.0, 1500.0),
    "mediastinum": (40.0, 400.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}
OTHER_WINDOWS = ("minmax", *WINDOW_PRESETS)  # what a file without a header window can be decoded with
WINDOWS = ("auto", "header", *OTHER_WINDOWS)
INTENSITIES = ("minmax", "percentile")
RESIZES = ("stretch", "letterbox")
PERCENTILES = (0.5, 99.5)
# EXIF orientation -> the transpose that shows the image upright (the table of ImageOps.exif_transpose)
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# What PIL's decoders raise on a corrupt or truncated file (UnidentifiedImageError is an OSError).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError)


def _check_choice(key: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise BenchmarkError(f"dataset.{key}={value} is not known: use one of {', '.join(valid)}")


@dataclass(frozen=True)
class DecodeOptions:
    """How pixels become 8-bit RGB (the dataset config's window, intensity and resize)."""

    window: str = "auto"  # DICOM: auto | header | minmax | lung | mediastinum | bone | brain
    intensity: str = "minmax"  # 16-bit / float images other than DICOM: minmax | percentile
    resize: str = "stretch"  # stretch | letterbox

    def __post_init__(self) -> None:
        _check_choice("window", self.window, WINDOWS)
        _check_choice("intensity", self.intensity, INTENSITIES)
        _check_choice("resize", self.resize, RESIZES)

    @classmethod
    def from_config(cls, cfg) -> "DecodeOptions":
        """From a dataset config node; keys it lacks (older runs, MedMNIST) keep the defaults."""
        return cls(**{key: str(cfg[key]) for key in ("window", "intensity", "resize") if cfg.get(key)})

    def record(self) -> dict:
        return asdict(self)


NO_HEADER_WINDOW = "no window of its own"  # in the reason of a file window=header cannot decode


class BadImage(BenchmarkError):
    """An image file that cannot be decoded; the message names the file and the reason."""


# ---------------------------------------------------------------- intensity mappings


def _linear_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] linearly onto 0..255, clipping outside; NaN becomes 0, an empty range black."""
    if not high > low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - low) / (high - low) * 255.0
    return np.nan_to_num(np.clip(np.round(scaled), 0, 255), nan=0.0).astype(np.uint8)


def rescale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map an array's own min..max onto 0..255 (a constant image becomes black; NaN/inf are ignored)."""
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    if finite.all():
        return _linear_to_uint8(values, float(values.min()), float(values.max()))
    if not finite.any():
        return np.zeros(values.shape, dtype=np.uint8)
    return _linear_to_uint8(values, float(values[finite].min()), float(values[finite].max()))


def percentile_to_uint8(values: np.ndarray) -> np.ndarray:
    """Clip to the 0.5..99.5 percentiles, then scale (min..max when those percentiles coincide)."""
    values = values.astype(np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape, dtype=np.uint8)
    low, high = (float(v) for v in np.percentile(finite, PERCENTILES))
    if not high > low:
        low, high = float(finite.min()), float(finite.max())
    return _linear_to_uint8(values, low, high)


def wide_to_uint8(values: np.ndarray, intensity: str) -> np.ndarray:
    _check_choice("intensity", intensity, INTENSITIES)
    return percentile_to_uint8(values) if intensity == "percentile" else rescale_to_uint8(values)


# ---------------------------------------------------------------- PIL images


def to_rgb8(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; transparency is composited over black, as a viewer would show it."""
    if image.mode in _WIDE_MODES:
        return Image.fromarray(rescale_to_uint8(np.asarray(image))).convert("RGB")
    if image.mode in ("P", "PA", "LA", "La", "RGBa") or "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        black = Image.new("RGBA", image.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, image).convert("RGB")
    return image.convert("RGB")


def _factor(size: tuple[int, int], max_side: int) -> int:
    """The integer reduction that brings the longer side to at most max_side (1: none needed)."""
    return max(1, math.ceil(max(size) / max(1, max_side)))


def _block_mean(values: np.ndarray, factor: int) -> np.ndarray:
    """Average factor x factor blocks without a float copy of the full array (edge remainder dropped)."""
    if factor <= 1:
        return values
    rows, cols = values.shape[0] // factor, values.shape[1] // factor
    total = np.zeros((rows, cols), dtype=np.float64)
    for i in range(factor):
        for j in range(factor):
            total += values[i : rows * factor : factor, j : cols * factor : factor]
    return total / (factor * factor)


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # a corrupt EXIF block must not make the pixels unreadable
        return 1


def _read_pil(path: Path, options: DecodeOptions, max_side: int) -> tuple[np.ndarray, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            if max(image.size) > max_side:  # JPEG: decode at 1/2, 1/4 or 1/8 scale, still >= max_side
                scale = max_side / max(image.size)
                image.draft(None, (max(1, math.ceil(image.size[0] * scale)),
                                   max(1, math.ceil(image.size[1] * scale))))
            orientation = _orientation(image)
            factor = _factor(image.size, max_side)
            if image.mode in _WIDE_MODES:
                gray = wide_to_uint8(_block_mean(np.asarray(image), factor), options.intensity)
                rgb, note = Image.fromarray(gray).convert("RGB"), options.intensity
            else:
                if factor > 1 and image.mode in _REDUCIBLE_MODES and "transparency" not in image.info:
                    image = image.reduce(factor)
                    factor = 1
                rgb = to_rgb8(image)
                rgb, note = (rgb.reduce(factor) if factor > 1 else rgb), "8-bit"
    if orientation in _ORIENTATION:
        rgb = rgb.transpose(_ORIENTATION[orientation])
    return np.asarray(rgb, dtype=np.uint8), note


# ---------------------------------------------------------------- DICOM


def _first(value) -> float:
    """A DS/IS value or the first of a multi-valued one."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):  # pydicom's MultiValue too
        value = value[0]
    return float(value)


def _header_window(dataset) -> tuple[float, float] | None:
    """The file's own WindowCenter/WindowWidth (first pair), or None when it has none usable."""
    center, width = dataset.get("WindowCenter"), dataset.get("WindowWidth")
    if center is None or width is None or center == "" or width == "":
        return None
    try:
        center, width = _first(center), _first(width)
    except (ValueError, TypeError, IndexError):
        return None
    return (center, width) if width > 0 and math.isfinite(center) and math.isfinite(width) else None


def _voi_lut(dataset, values: np.ndarray) -> np.ndarray | None:
    """The file's VOI LUT Sequence (first item) applied and scaled to 0..255, or None when it has none."""
    sequence = dataset.get("VOILUTSequence")
    if not sequence:
        return None
    from pydicom.pixels import apply_voi_lut

    indices = np.round(values).astype(np.int64)  # a LUT is indexed by whole modality values
    out = apply_voi_lut(indices, dataset, index=0, prefer_lut=True).astype(np.float64)
    top = float(2 ** int(sequence[0].LUTDescriptor[2]) - 1)
    return _linear_to_uint8(out, 0.0, max(top, float(out.max())))


def _window_gray(path: Path, dataset, values: np.ndarray, window: str) -> tuple[np.ndarray, str]:
    """Modality values (HU for CT) -> uint8 gray by the chosen window, and the note naming it."""
    header = _header_window(dataset)
    has_lut = bool(dataset.get("VOILUTSequence"))
    if window == "auto":
        if header is not None or has_lut:
            window = "header"
        else:
            window = "lung" if str(dataset.get("Modality", "")).upper() == "CT" else "minmax"
    if window == "header":
        if header is not None:
            level, width = header
            return _linear_to_uint8(values, level - width / 2, level + width / 2), \
                f"window header (L{level:g} W{width:g})"
        if has_lut:
            return _voi_lut(dataset, values), "window header (VOI LUT)"
        raise BadImage(f"{path} has {NO_HEADER_WINDOW} (WindowCenter/WindowWidth or VOI LUT) but "
                       f"dataset.window=header asks for it: use window=auto or one of "
                       f"{', '.join(OTHER_WINDOWS)}")
    if window == "minmax":
        return rescale_to_uint8(values), "minmax"
    level, width = WINDOW_PRESETS[window]
    return _linear_to_uint8(values, level - width / 2, level + width / 2), f"window {window}"


def _colour_dicom(dataset, pixels: np.ndarray) -> np.ndarray:
    photometric = str(dataset.get("PhotometricInterpretation", ""))
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        pixels = apply_color_lut(pixels, dataset)
    if pixels.ndim == 2:  # a palette lookup that stayed single-channel: show as gray
        pixels = np.repeat(pixels[..., None], 3, axis=-1)
    return pixels if pixels.dtype == np.uint8 else rescale_to_uint8(pixels)


def read_dicom(path: Path, window: str = "auto", max_side: int = 4096) -> tuple[np.ndarray, str]:
    """A single-frame DICOM -> ((H, W, 3) uint8, note): modality LUT, then the window (module docstring)."""
    _check_choice("window", window, WINDOWS)
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut
    except ImportError:
        raise BenchmarkError(f"{path} is DICOM but pydicom is missing: pip install pydicom") from None
    try:
        dataset = pydicom.dcmread(path)
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
        if frames > 1:
            raise BadImage(f"{path} is a multi-frame DICOM ({frames} frames): this benchmark classifies one "
                           "image per file; export the slices you want as single-frame DICOM files")
        pixels = dataset.pixel_array
        if int(dataset.get("SamplesPerPixel", 1) or 1) > 1 or \
                str(dataset.get("PhotometricInterpretation", "")) == "PALETTE COLOR":
            rgb, note = _colour_dicom(dataset, pixels), "dicom colour"
        else:
            if pixels.ndim != 2:
                raise BadImage(f"{path} holds pixel data of shape {pixels.shape}, not one grayscale image: "
                               "export it as a single-frame DICOM")
            values = np.asarray(apply_modality_lut(pixels, dataset), dtype=np.float64)
            gray, note = _window_gray(path, dataset, values, window)
            if str(dataset.get("PhotometricInterpretation", "")) == "MONOCHROME1":
                gray = 255 - gray  # MONOCHROME1 stores bright as low values
            rgb = np.repeat(gray[..., None], 3, axis=-1)
    except BenchmarkError:
        raise
    except (pydicom.errors.InvalidDicomError, AttributeError, RuntimeError, NotImplementedError, KeyError,
            TypeError, *_DECODE_ERRORS) as error:
        raise BadImage(f"cannot read DICOM {path} ({type(error).__name__}: {error}): it needs single-frame "
                       "pixel data in a transfer syntax pydicom can decode; re-export it") from None
    factor = _factor(rgb.shape[:2], max_side)
    if factor > 1:
        rgb = np.asarray(Image.fromarray(rgb).reduce(factor), dtype=np.uint8)
    return rgb, note


def _has_dicom_marker(path: Path) -> bool:
    """The DICM marker at byte 128 (DICOM Part 10); reads only the 132-byte header."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def _is_dicom(path: Path) -> bool:
    """A .dcm/.dicom suffix (any case), or the DICM marker at byte 128 of a file with another name."""
    return path.suffix.lower() in DICOM_SUFFIXES or _has_dicom_marker(path)


def is_image_file(path: Path) -> bool:
    """Whether a listing keeps this file: the one rule for the loaders and `predict`.

    A regular, non-hidden file with an image suffix (any case), or any other regular file with the DICOM
    marker: PACS exports name slices `IM-0001`, `00000001` or by UID (`1.2.840...3`). Only files without an
    image suffix are opened, for 132 bytes, so image folders list as fast as before; junk (.txt, .csv,
    Thumbs.db) has no marker and stays ignored. `is_file` first: opening a FIFO would block.
    """
    if path.name.startswith("."):
        return False
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return path.is_file()
    return path.is_file() and _has_dicom_marker(path)


JUNK_FOLDERS = ("__MACOSX",)  # what unzipping a macOS archive leaves beside the images


def is_listed_folder(name: str) -> bool:
    """Whether a folder's images are listed: not hidden (.ipynb_checkpoints, .Trash), not JUNK_FOLDERS."""
    return not name.startswith(".") and name not in JUNK_FOLDERS


def images_below(folder: Path) -> list[Path]:
    """Every image file below `folder`, sorted as text (the order that made every split so far), none
    inside a hidden or junk folder (`is_listed_folder`), which are not even walked into: the one listing
    of the loaders' class folders and `predict`'s input folders. Links to folders are not followed, as
    `Path.rglob` did not (a link back up would list an image many times); links to files are."""
    found = []
    for parent, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if is_listed_folder(name)]
        found += [path for name in files if is_image_file(path := Path(parent) / name)]
    return sorted(found, key=str)


# ---------------------------------------------------------------- public API


def read_rgb(path: Path, options: DecodeOptions = DecodeOptions(), *, max_side: int = 4096
             ) -> tuple[np.ndarray, str]:
    """One image file -> (H, W, 3) uint8 at (about) its own resolution, at most max_side on the longer side,
    and a short note of the intensity mapping used (e.g. "8-bit", "minmax", "window lung"). An unreadable
    file raises BadImage naming it and the reason."""
    path = Path(path)
    try:
        if not path.is_file():
            raise BadImage(f"cannot read image {path}: no such file")
        if path.stat().st_size == 0:
            raise BadImage(f"cannot read image {path}: the file is empty (0 bytes); remove or re-export it")
        if _is_dicom(path):
            return read_dicom(path, options.window, max_side)
        return _read_pil(path, options, max_side)
    except BenchmarkError:
        raise
    except Image.DecompressionBombError as error:
        raise BadImage(f"cannot read image {path}: {error}. Downscale the file, or raise "
                       "PIL.Image.MAX_IMAGE_PIXELS if you trust it") from None
    except MemoryError:
        raise BadImage(f"cannot read image {path}: not enough memory to decode it; downscale it") from None
    except UnidentifiedImageError:
        with open(path, "rb") as handle:
            head = handle.read(16)
        raise BadImage(f"cannot read image {path}: not an image format PIL recognises (it starts with "
                       f"{head!r}); remove the file or re-export it") from None
    except _DECODE_ERRORS as error:
        raise BadImage(f"cannot read image {path}: corrupt or truncated ({type(error).__name__}: {error}); "
                       "remove the file or re-export it") from None


def _letterbox(rgb: np.ndarray) -> np.ndarray:
    """Pad (H, W, 3) with black to a centred square."""
    height, width = rgb.shape[:2]
    side = max(height, width)
    if height == width:
        return rgb
    square = np.zeros((side, side, 3), dtype=np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = rgb
    return square


def resize_rgb(rgb: np.ndarray, size: int, mode: str = "stretch") -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8 by bilinear resize: `stretch` squashes to the square (as the
    seed papers did); `letterbox` first pads to a square with black, keeping the aspect ratio."""
    _check_choice("resize", mode, RESIZES)
    if mode == "letterbox":
        rgb = _letterbox(rgb)
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def decode_file(path: Path, size: int, options: DecodeOptions = DecodeOptions()) -> np.ndarray:
    """One image file -> (size, size, 3) uint8; an unreadable file raises BadImage naming the file."""
    return resize_rgb(read_rgb(path, options, max_side=max(4096, 4 * size))[0], size, options.resize)


def decode_array(pixels: np.ndarray, size: int, options: DecodeOptions = DecodeOptions()) -> np.ndarray:
    """An in-memory image (H, W), (H, W, 1) or (H, W, 3) of any dtype -> (size, size, 3) uint8; non-uint8
    arrays are scaled by options.intensity."""
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.dtype != np.uint8:
        pixels = wide_to_uint8(pixels, options.intensity)
    return resize_rgb(np.asarray(to_rgb8(Image.fromarray(pixels)), dtype=np.uint8), size, options.resize)


def dicom_tags(path: Path) -> dict[str, str]:
    """PatientID, StudyInstanceUID, SOPInstanceUID and Modality of a DICOM file ({} for other files)."""
    path = Path(path)
    if not _is_dicom(path):
        return {}
    import pydicom

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except (pydicom.errors.InvalidDicomError, *_DECODE_ERRORS) as error:
        raise BadImage(f"cannot read DICOM header of {path} ({type(error).__name__}: {error}); "
                       "remove the file or re-export it") from None
    keys = ("PatientID", "StudyInstanceUID", "SOPInstanceUID", "Modality")
    return {key: str(header.get(key, "")) for key in keys if header.get(key, "")}
