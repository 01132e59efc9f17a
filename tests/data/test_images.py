"""Image decoding on real files of every supported kind."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.images import decode_array, decode_file
from benchmark.errors import BenchmarkError
from tests.conftest import write_dicom


def gradient(dtype, high) -> np.ndarray:
    return np.linspace(0, high, 16 * 16).reshape(16, 16).astype(dtype)


def test_16bit_png_is_rescaled_by_its_range_not_clipped(tmp_path: Path):
    pixels = gradient(np.uint16, 4000) + 1000  # a CT-like range: 1000..5000, far above 255
    Image.fromarray(pixels).save(tmp_path / "ct.png")
    decoded = decode_file(tmp_path / "ct.png", 16)
    assert decoded.shape == (16, 16, 3) and decoded.dtype == np.uint8
    assert decoded.min() == 0 and decoded.max() == 255
    assert len(np.unique(decoded[..., 0])) > 200, "clipping would collapse the range to a few values"


def test_16bit_tiff(tmp_path: Path):
    Image.fromarray(gradient(np.uint16, 60000)).save(tmp_path / "x.tif")
    decoded = decode_file(tmp_path / "x.tif", 16)
    assert decoded.max() == 255 and decoded.min() == 0


def test_grayscale_becomes_three_equal_channels(tmp_path: Path):
    Image.fromarray(gradient(np.uint8, 255)).save(tmp_path / "g.png")
    decoded = decode_file(tmp_path / "g.png", 16)
    assert np.array_equal(decoded[..., 0], decoded[..., 2])
    assert np.array_equal(decoded[..., 0], gradient(np.uint8, 255))


def test_rgba_is_composited_over_black(tmp_path: Path):
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:, :4, 3] = 255  # left half opaque red, right half fully transparent red
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    decoded = decode_file(tmp_path / "a.png", 8)
    assert decoded[0, 0, 0] == 200 and decoded[0, 7, 0] == 0


def test_palette_image(tmp_path: Path):
    image = Image.fromarray(gradient(np.uint8, 255)).convert("P")
    image.save(tmp_path / "p.png")
    assert decode_file(tmp_path / "p.png", 16).shape == (16, 16, 3)


@pytest.mark.parametrize("suffix", [".jpg", ".bmp"])
def test_jpeg_and_bmp(tmp_path: Path, suffix):
    Image.fromarray(np.full((20, 30, 3), 120, np.uint8)).save(tmp_path / f"x{suffix}")
    decoded = decode_file(tmp_path / f"x{suffix}", 24)
    assert decoded.shape == (24, 24, 3) and abs(int(decoded.mean()) - 120) <= 2


def test_dicom_with_rescale_and_monochrome1(tmp_path: Path):
    write_dicom(tmp_path / "slice.dcm", gradient(np.uint16, 3000), "MONOCHROME1", intercept=-1024)
    decoded = decode_file(tmp_path / "slice.dcm", 16)
    assert decoded[0, 0, 0] == 255 and decoded[-1, -1, 0] == 0  # MONOCHROME1: low values are bright


def test_unreadable_file_names_the_file(tmp_path: Path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(BenchmarkError, match="broken.png"):
        decode_file(tmp_path / "broken.png", 16)


def test_array_images_of_any_dtype():
    assert decode_array(gradient(np.float32, 1.0)[..., None], 8).shape == (8, 8, 3)
    assert decode_array(np.zeros((8, 8, 3), np.uint8), 4).shape == (4, 4, 3)


def test_a_file_that_is_not_dicom_is_a_user_error(tmp_path: Path):
    pytest.importorskip("pydicom")
    (tmp_path / "report.dcm").write_bytes(b"this is a text report saved as .dcm" * 10)
    with pytest.raises(BenchmarkError, match="report.dcm"):
        decode_file(tmp_path / "report.dcm", 16)
