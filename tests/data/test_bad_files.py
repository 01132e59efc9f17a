"""A real export's odd files: unreadable images are skipped and listed (or all reported at once), junk
files are ignored silently, upper-case extensions are images."""

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from benchmark.data import load_dataset
from benchmark.data.images import DecodeOptions
from benchmark.data.scan import scan_files
from benchmark.errors import BenchmarkError

GOOD_PER_CLASS = 20


def export_with_bad_files(root: Path) -> dict[str, str]:
    """60 good images in three classes, plus the three bad files of the issue; returns bad file -> kind."""
    for k, klass in enumerate(("covid", "normal", "pneumonia")):
        folder = root / klass
        folder.mkdir(parents=True)
        for i in range(GOOD_PER_CLASS):
            pixels = np.random.default_rng([k, i]).integers(0, 256, (32, 32), dtype=np.uint8)
            suffix = ".PNG" if i == 0 else ".png"  # upper-case extensions are images too
            Image.fromarray(pixels).save(folder / f"scan{i:03d}{suffix}", format="PNG")
    (root / "covid" / "empty.png").write_bytes(b"")
    jpeg = root / "normal" / "cut.jpg"
    Image.fromarray(np.random.default_rng(9).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(jpeg)
    jpeg.write_bytes(jpeg.read_bytes()[:600])
    (root / "pneumonia" / "notes.jpg").write_text("radiologist's notes, not an image\n")
    for junk in (".DS_Store", "Thumbs.db", "readme.txt", ".hidden.png"):
        (root / "covid" / junk).write_bytes(b"\x00junk")
    for hidden in ("normal/.ipynb_checkpoints", "normal/__MACOSX", "__MACOSX/normal"):  # QA: trained on
        (root / hidden).mkdir(parents=True)
        Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(root / hidden / "scan000.png")
    return {"covid/empty.png": "zero", "normal/cut.jpg": "truncated", "pneumonia/notes.jpg": "text"}


def cfg(root: Path, **changes):
    return OmegaConf.create({"loader": "folder", "name": None, "path": str(root), "split": [0.7, 0.1, 0.2],
                             "val_fraction": 0.2, "split_seed": 0, **changes})


def test_bad_images_are_skipped_and_listed_junk_is_ignored(tmp_path: Path):
    bad = export_with_bad_files(tmp_path / "export")
    dataset = load_dataset(cfg(tmp_path / "export"), tmp_path, tmp_path / "cache")
    assert sum(len(split) for split in dataset.splits.values()) == 3 * GOOD_PER_CLASS
    skipped = {record["file"]: record["reason"] for record in dataset.records["skipped"]}
    assert set(skipped) == set(bad)
    assert all(f in skipped[f] for f in bad), "each reason names its file"
    listed = {i for split in dataset.splits.values() for i in split.ids}
    assert "covid/scan000.PNG" in listed and not any("junk" in i or i.endswith(".txt") for i in listed)
    assert not any("ipynb" in i or "MACOSX" in i for i in listed)  # not a class, not a patient: ignored


def test_the_load_keeps_each_files_scan_the_skipped_ones_too(tmp_path: Path):
    """What benchmark.evaluate compares a site's images by comes with the dataset: the records a fresh
    scan of its files would give, the unreadable files' reasons included."""
    bad = export_with_bad_files(tmp_path / "export")
    dataset = load_dataset(cfg(tmp_path / "export"), tmp_path, tmp_path / "cache")
    listed = [i for split in dataset.splits.values() for i in split.ids]
    assert set(dataset.scans) == {*listed, *bad}
    again = scan_files(tmp_path / "export", [*listed, *bad], {}, DecodeOptions(), None)  # decoded anew
    assert dataset.scans == again
    assert all(dataset.scans[f].reason for f in bad) and all(dataset.scans[i].readable for i in listed)


def test_on_bad_image_error_reports_every_bad_file_at_once(tmp_path: Path):
    bad = export_with_bad_files(tmp_path / "export")
    with pytest.raises(BenchmarkError) as error:
        load_dataset(cfg(tmp_path / "export", on_bad_image="error"), tmp_path)
    message = str(error.value)
    assert message.startswith("3 unreadable image file(s)") and "\n" not in message
    assert all(f in message for f in bad) and "dataset.on_bad_image=skip" in message
