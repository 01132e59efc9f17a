"""The decode-once scan on real files written here: hashes, unreadable files, the on-disk cache."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.images import DecodeOptions
from benchmark.data.scan import HASH_BITS, ScanRecord, dhash_of, scan_arrays, scan_files
from benchmark.files import file_sha256


def smooth_field(seed: int, size: int = 96) -> np.ndarray:
    """A realistic-looking grayscale image: coarse random noise, bicubically enlarged."""
    coarse = np.random.default_rng(seed).integers(0, 256, (10, 10), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))


def scan(root: Path, ids: list[str], cache: Path | None = None) -> dict[str, ScanRecord]:
    hashes = {i: file_sha256(root / i) for i in ids if (root / i).exists()}
    return scan_files(root, ids, hashes, DecodeOptions(), cache)


def bits_apart(a: ScanRecord, b: ScanRecord) -> int:
    return (a.dhash ^ b.dhash).bit_count()


def test_png_resaved_at_another_compression_level_has_the_same_pixel_hash(tmp_path: Path):
    image = Image.fromarray(smooth_field(1)).convert("RGB")
    image.save(tmp_path / "fast.png", compress_level=0)
    image.save(tmp_path / "small.png", compress_level=9)
    assert (tmp_path / "fast.png").read_bytes() != (tmp_path / "small.png").read_bytes()
    records = scan(tmp_path, ["fast.png", "small.png"])
    assert records["fast.png"].pixel_hash == records["small.png"].pixel_hash
    assert records["fast.png"].reason is None and records["fast.png"].note == "8-bit"


def test_jpeg_reencode_and_half_size_copy_are_a_few_bits_apart_and_other_images_are_not(tmp_path: Path):
    image = Image.fromarray(smooth_field(2, 128))
    image.save(tmp_path / "q95.jpg", quality=95)
    image.save(tmp_path / "q70.jpg", quality=70)
    image.resize((64, 64), Image.Resampling.BILINEAR).save(tmp_path / "half.png")
    Image.fromarray(smooth_field(3, 128)).save(tmp_path / "other.png")
    records = scan(tmp_path, ["q95.jpg", "q70.jpg", "half.png", "other.png"])
    assert records["q95.jpg"].pixel_hash != records["q70.jpg"].pixel_hash
    near = 28  # the default dataset.near_duplicate_bits, of 256
    assert bits_apart(records["q95.jpg"], records["q70.jpg"]) <= near
    assert bits_apart(records["q95.jpg"], records["half.png"]) <= near
    assert bits_apart(records["q95.jpg"], records["other.png"]) >= 2 * near


def test_dhash_reads_left_to_right_differences():
    ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))  # brighter to the right
    assert dhash_of(ramp) == 2**HASH_BITS - 1 and dhash_of(ramp[:, ::-1]) == 0
    assert dhash_of(np.repeat(ramp[..., None], 3, axis=-1)) == dhash_of(ramp)


@pytest.mark.parametrize("kind", ["truncated_png", "zero_bytes", "text_as_jpg"])
def test_an_unreadable_file_gives_a_reason_not_an_exception(tmp_path: Path, kind: str):
    name = "bad.jpg" if kind == "text_as_jpg" else "bad.png"
    if kind == "truncated_png":
        Image.fromarray(smooth_field(4)).save(tmp_path / "whole.png")
        (tmp_path / name).write_bytes((tmp_path / "whole.png").read_bytes()[:300])
    elif kind == "zero_bytes":
        (tmp_path / name).write_bytes(b"")
    else:
        (tmp_path / name).write_text("patient list, not an image\n")
    Image.fromarray(smooth_field(5)).save(tmp_path / "good.png")
    records = scan(tmp_path, [name, "good.png"])
    assert records[name].reason and name in records[name].reason
    assert records[name].pixel_hash is None and records[name].dhash is None
    assert records["good.png"].reason is None


def test_a_second_scan_decodes_nothing_and_names_its_own_files(tmp_path: Path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    Image.fromarray(smooth_field(6)).save(data / "a.png")
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    ids = ["a.png", "broken.png"]
    hashes = {i: file_sha256(data / i) for i in ids}
    first = scan_files(data, ids, hashes, DecodeOptions(), cache)
    for image_id in ids:
        (data / image_id).unlink()  # nothing left to decode: records can only come from the cache
    again = scan_files(data, ids, hashes, DecodeOptions(), cache)
    assert again == first and again["a.png"].reason is None
    # the same bytes under another name: the cached reason names the file asked for
    renamed = scan_files(data, ["b.png"], {"b.png": hashes["broken.png"]}, DecodeOptions(), cache)
    assert "b.png" in renamed["b.png"].reason and "broken.png" not in renamed["b.png"].reason
    # other decode options are another cache key: decoding is attempted (and the file is gone)
    other = scan_files(data, ["a.png"], hashes, DecodeOptions(resize="letterbox"), cache)
    assert other["a.png"].reason is not None


def test_a_corrupt_cache_entry_is_ignored_and_rebuilt(tmp_path: Path):
    Image.fromarray(smooth_field(7)).save(tmp_path / "a.png")
    cache = tmp_path / "cache"
    good = scan(tmp_path, ["a.png"], cache)["a.png"]
    (entry,) = (cache / "scan").rglob("*.json")
    entry.write_text('{"version": 1, "sha256": "')
    assert scan(tmp_path, ["a.png"], cache)["a.png"] == good
    assert entry.read_text().startswith("{") and '"record"' in entry.read_text()


def test_dicom_tags_are_recorded(tmp_path: Path):
    pydicom = pytest.importorskip("pydicom")
    from tests.conftest import write_dicom

    path = write_dicom(tmp_path / "slice.dcm", (smooth_field(8).astype(np.uint16) * 16))
    header = pydicom.dcmread(path)
    header.PatientID, header.SOPInstanceUID = "P-001", "1.2.3.4"
    header.save_as(path)
    Image.fromarray(smooth_field(8)).save(tmp_path / "plain.png")
    records = scan(tmp_path, ["slice.dcm", "plain.png"])
    assert records["slice.dcm"].reason is None
    assert records["slice.dcm"].dicom["PatientID"] == "P-001"
    assert records["slice.dcm"].dicom["SOPInstanceUID"] == "1.2.3.4"
    assert records["plain.png"].dicom == {}


def test_in_memory_arrays_gray_and_rgb_of_the_same_pixels_hash_alike():
    gray = smooth_field(9, 28)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    arrays = {"train/0": gray, "test/0": rgb, "test/1": smooth_field(10, 28)}
    records = scan_arrays(list(arrays), arrays.__getitem__)
    assert records["train/0"].pixel_hash == records["test/0"].pixel_hash != records["test/1"].pixel_hash
    assert all(r.reason is None and r.dicom == {} for r in records.values())
