"""Decode one image file into the 8-bit RGB array every backbone expects.

Medical exports come as 16-bit grayscale PNG/TIFF, palette or RGBA PNGs and DICOM; each is mapped to
8-bit RGB without clipping (16-bit and float data are rescaled by the image's own range).
"""

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from benchmark.errors import BenchmarkError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm"})
_WIDE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def rescale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map an array's own min..max onto 0..255 (a constant image becomes black)."""
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) / (high - low) * 255.0).astype(np.uint8)


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


def resize_rgb(image: Image.Image, size: int) -> np.ndarray:
    """Square resize (as the seed papers did) to a (size, size, 3) uint8 array."""
    return np.asarray(to_rgb8(image).resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def read_dicom(path: Path) -> Image.Image:
    """A single-frame DICOM as a PIL image, with modality and VOI LUTs (windowing) applied."""
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:
        raise BenchmarkError(f"{path} is DICOM but pydicom is missing: pip install pydicom") from None
    try:
        dataset = pydicom.dcmread(path)
        pixels = apply_voi_lut(apply_modality_lut(dataset.pixel_array, dataset), dataset)
    except (pydicom.errors.InvalidDicomError, AttributeError, RuntimeError) as error:
        raise BenchmarkError(f"cannot read DICOM {path} ({error}): it needs single-frame pixel data "
                             "in a transfer syntax pydicom can decode") from None
    if pixels.ndim == 3 and getattr(dataset, "SamplesPerPixel", 1) == 1:
        raise BenchmarkError(f"{path} is a multi-frame DICOM: export single slices to classify them")
    gray = rescale_to_uint8(pixels)
    if getattr(dataset, "PhotometricInterpretation", "") == "MONOCHROME1":
        gray = 255 - gray  # MONOCHROME1 stores bright as low values
    return Image.fromarray(gray)


def decode_file(path: Path, size: int) -> np.ndarray:
    """One image file -> (size, size, 3) uint8; an unreadable file is a user error naming the file."""
    try:
        if path.suffix.lower() == ".dcm":
            return resize_rgb(read_dicom(path), size)
        with Image.open(path) as image:
            return resize_rgb(image, size)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise BenchmarkError(f"cannot read image {path}: {error}; remove the file or re-export it") from None


def decode_array(pixels: np.ndarray, size: int) -> np.ndarray:
    """An in-memory image (H, W), (H, W, 1) or (H, W, 3) of any dtype -> (size, size, 3) uint8."""
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.dtype != np.uint8:
        pixels = rescale_to_uint8(pixels)
    return resize_rgb(Image.fromarray(pixels), size)
