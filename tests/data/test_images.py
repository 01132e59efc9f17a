"""Image decoding on real files of every supported kind."""

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.images import BadImage, DecodeOptions, decode_array, decode_file, read_rgb, resize_rgb
from benchmark.errors import BenchmarkError
from tests.conftest import ROOT, write_dicom


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


# ---------------------------------------------------------------- options, odd and bad files


def lung_like_16bit_with_burned_in_pixel() -> np.ndarray:
    pixels = (np.linspace(0, 1500, 64 * 64).reshape(64, 64) + 1000).astype(np.uint16)  # 1000..2500
    pixels[0, 0] = 65535  # one saturated burned-in annotation pixel
    return pixels


def test_percentile_intensity_survives_one_saturated_pixel(tmp_path: Path):
    Image.fromarray(lung_like_16bit_with_burned_in_pixel()).save(tmp_path / "scan.png")
    minmax, note_minmax = read_rgb(tmp_path / "scan.png")
    robust, note_robust = read_rgb(tmp_path / "scan.png", DecodeOptions(intensity="percentile"))
    assert (note_minmax, note_robust) == ("minmax", "percentile")
    assert len(np.unique(minmax[1:, :, 0])) < 10, "minmax: the anatomy collapses to a few grey levels"
    assert len(np.unique(robust[1:, :, 0])) > 200
    assert robust[0, 0, 0] == 255 and robust[-1, -1, 0] == 255 and robust[0, 1, 0] == 0


def test_8bit_images_ignore_the_intensity_option(tmp_path: Path):
    Image.fromarray(gradient(np.uint8, 200)).save(tmp_path / "g.png")
    plain, note = read_rgb(tmp_path / "g.png", DecodeOptions(intensity="percentile"))
    assert note == "8-bit" and np.array_equal(plain[..., 0], gradient(np.uint8, 200))


def test_decode_array_honours_the_intensity_option():
    pixels = lung_like_16bit_with_burned_in_pixel()
    assert len(np.unique(decode_array(pixels, 64)[1:, :, 0])) < 10
    assert len(np.unique(decode_array(pixels, 64, DecodeOptions(intensity="percentile"))[1:, :, 0])) > 200


def test_float_image_with_nan_is_scaled_by_its_finite_values():
    pixels = gradient(np.float32, 1.0)
    pixels[0, 0] = np.nan
    decoded = decode_array(pixels, 16)
    assert decoded[0, 0, 0] == 0 and decoded[-1, -1, 0] == 255


def test_letterbox_keeps_the_aspect_ratio_and_stretch_does_not():
    wide = np.full((10, 40, 3), 200, np.uint8)
    boxed = resize_rgb(wide, 40, "letterbox")
    assert boxed[0, 20, 0] == 0 and boxed[-1, 20, 0] == 0, "black bars above and below"
    assert boxed[20, 20, 0] == 200 and boxed[20, 0, 0] == 200
    assert (resize_rgb(wide, 40, "stretch") == 200).all()
    square = np.random.default_rng(0).integers(0, 255, (12, 12, 3), dtype=np.uint8)
    assert np.array_equal(resize_rgb(square, 8, "letterbox"), resize_rgb(square, 8))


def test_default_decoding_is_a_bilinear_square_resize(tmp_path: Path):
    rgb = np.random.default_rng(1).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    expected = np.asarray(Image.fromarray(rgb).resize((24, 24), Image.Resampling.BILINEAR))
    assert np.array_equal(decode_file(tmp_path / "x.png", 24), expected)


@pytest.mark.parametrize(("key", "value"), [("window", "soft"), ("intensity", "zscore"), ("resize", "crop")])
def test_unknown_option_names_the_valid_ones(key, value):
    with pytest.raises(BenchmarkError, match=f"{key}={value}.*use one of"):
        DecodeOptions(**{key: value})
    with pytest.raises(BenchmarkError, match="lung, mediastinum"):
        DecodeOptions(window="soft")


def test_options_from_config_and_record():
    options = DecodeOptions.from_config({"window": "lung", "resize": "letterbox", "intensity": None})
    assert options.record() == {"window": "lung", "intensity": "minmax", "resize": "letterbox"}


def test_truncated_jpeg_is_a_bad_image(tmp_path: Path):
    rgb = np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImage, match=r"cut\.jpg.*truncated"):
        decode_file(tmp_path / "cut.jpg", 16)


@pytest.mark.parametrize("name", ["empty.jpg", "empty.png", "empty.dcm"])
def test_zero_byte_file_is_a_bad_image(tmp_path: Path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(BadImage, match=rf"{name}.*empty \(0 bytes\)"):
        decode_file(tmp_path / name, 16)


def test_text_saved_as_jpg_is_a_bad_image(tmp_path: Path):
    (tmp_path / "notes.jpg").write_text("patient notes, not a picture\n" * 5)
    with pytest.raises(BadImage, match=r"notes\.jpg.*not an image format.*patient notes"):
        decode_file(tmp_path / "notes.jpg", 16)


def test_missing_file_is_a_bad_image(tmp_path: Path):
    with pytest.raises(BadImage, match=r"gone\.png.*no such file"):
        decode_file(tmp_path / "gone.png", 16)


def test_decompression_bomb_error_is_a_bad_image(tmp_path: Path, monkeypatch):
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 10000 px > 2 x limit: PIL raises, not warns
    with pytest.raises(BadImage, match=r"huge\.png.*MAX_IMAGE_PIXELS"):
        decode_file(tmp_path / "huge.png", 16)


def test_decompression_bomb_warning_is_silenced_and_size_bounded(tmp_path: Path, monkeypatch):
    Image.fromarray(gradient(np.uint8, 255).repeat(8, 0).repeat(8, 1)).save(tmp_path / "big.png")  # 128 px
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10000)  # 16384 px: over the limit, under twice it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rgb, note = read_rgb(tmp_path / "big.png", max_side=32)
    assert rgb.shape == (32, 32, 3) and note == "8-bit"


def test_wide_image_is_reduced_before_scaling(tmp_path: Path):
    Image.fromarray(gradient(np.uint16, 4000).repeat(8, 0).repeat(8, 1)).save(tmp_path / "big16.png")
    rgb, note = read_rgb(tmp_path / "big16.png", max_side=40)
    assert rgb.shape == (32, 32, 3) and note == "minmax" and rgb.min() == 0 and rgb.max() == 255


HUGE_JPEG_DECODE = """
import resource, sys
from pathlib import Path
import warnings
from PIL import Image
from benchmark.data.images import decode_file, read_rgb
warnings.simplefilter("error", Image.DecompressionBombWarning)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rgb, note = read_rgb(Path(sys.argv[1]))
small = decode_file(Path(sys.argv[1]), 64)
growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(rgb.shape[0], rgb.shape[1], note, int(small[32, 0, 0]), int(small[32, 63, 0]), growth // 1024)
"""


def test_12000px_jpeg_decodes_without_the_full_resolution_array(tmp_path: Path):
    image = Image.new("L", (12000, 12000), 30)
    image.paste(220, (6000, 0, 12000, 12000))  # right half bright
    image.save(tmp_path / "scan.jpg", quality=50)
    del image
    result = subprocess.run([sys.executable, "-c", HUGE_JPEG_DECODE, str(tmp_path / "scan.jpg")],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    height, width, note, left, right, growth_mib = result.stdout.split()
    assert max(int(height), int(width)) <= 4096 and note == "8-bit"
    assert abs(int(left) - 30) <= 3 and abs(int(right) - 220) <= 3
    assert int(growth_mib) < 200, f"grew {growth_mib} MiB: a 12000x12000 RGB array alone is 412 MiB"


def test_cmyk_jpeg_becomes_correct_rgb(tmp_path: Path):
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    cmyk.paste((255, 0, 255, 0), (8, 0, 16, 16))  # right half: pure green
    cmyk.save(tmp_path / "print.jpg", quality=95)
    assert Image.open(tmp_path / "print.jpg").mode == "CMYK"
    rgb = decode_file(tmp_path / "print.jpg", 16)
    assert np.allclose(rgb[8, 2], (255, 0, 0), atol=12) and np.allclose(rgb[8, 13], (0, 255, 0), atol=12)


def test_palette_png_with_transparency(tmp_path: Path):
    image = Image.fromarray(gradient(np.uint8, 255)).convert("P")
    image.info["transparency"] = int(np.asarray(image)[-1, -1])
    image.save(tmp_path / "p.png", transparency=image.info["transparency"])
    decoded = decode_file(tmp_path / "p.png", 16)
    assert decoded[-1, -1].tolist() == [0, 0, 0] and decoded[8, 8, 0] > 0


def test_exif_rotated_jpeg_is_shown_upright(tmp_path: Path):
    stored = np.zeros((20, 40, 3), np.uint8)  # stored landscape, bright left edge
    stored[:, :8] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the viewer shows a portrait with the bright edge on top
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    rgb, _ = read_rgb(tmp_path / "phone.jpg")
    assert rgb.shape == (40, 20, 3)
    assert rgb[:6].mean() > 200 and rgb[-20:].mean() < 30


@pytest.mark.parametrize("suffix", [".PNG", ".JPG", ".JPEG", ".TIF"])
def test_upper_case_suffixes(tmp_path: Path, suffix):
    Image.fromarray(np.full((12, 12, 3), 90, np.uint8)).save(tmp_path / f"x{suffix}", format=None
                                                             if suffix != ".JPEG" else "JPEG")
    assert abs(int(decode_file(tmp_path / f"x{suffix}", 8).mean()) - 90) <= 2
