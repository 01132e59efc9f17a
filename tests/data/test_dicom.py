"""DICOM decoding: Hounsfield units, windows (presets, the file's own, auto), MONOCHROME1, odd files.

Uses the CT and MR files pydicom ships for its own tests (CT_small.dcm: Modality CT, no window tags,
intercept -1024; MR_small.dcm: Modality MR, WindowCenter 600 / WindowWidth 1600) and crafted files.
"""

import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmark.data.images import BadImage, DecodeOptions, decode_file, dicom_tags, read_rgb
from benchmark.errors import BenchmarkError
from tests.conftest import write_dicom

pydicom = pytest.importorskip("pydicom")


def shipped(name: str, tmp_path: Path) -> Path:
    """A private copy of one of pydicom's own test files (skip when the installed package lacks it)."""
    try:
        from pydicom.data import get_testdata_file

        source = get_testdata_file(name)
    except Exception as error:  # noqa: BLE001 - any failure to find it offline means: not available here
        pytest.skip(f"pydicom test file {name} is not available offline ({error})")
    if source is None:
        pytest.skip(f"pydicom test file {name} is not available offline")
    return Path(shutil.copy(source, tmp_path / name))


def edited(path: Path, target: Path, **tags) -> Path:
    """A copy of a DICOM file with tags set (value None: removed)."""
    dataset = pydicom.dcmread(path)
    for key, value in tags.items():
        if value is None:
            if key in dataset:
                delattr(dataset, key)
        else:
            setattr(dataset, key, value)
    dataset.save_as(target)
    return target


def hu_slice(tmp_path: Path, hu: list[float], photometric: str = "MONOCHROME2", name: str = "s.dcm") -> Path:
    """A crafted 1xN 16-bit slice whose stored values + intercept -3000 are the given Hounsfield units."""
    stored = np.array([hu], dtype=np.float64) + 3000
    return write_dicom(tmp_path / name, stored.astype(np.uint16), photometric, intercept=-3000)


def gray(path: Path, window: str = "auto") -> tuple[np.ndarray, str]:
    rgb, note = read_rgb(path, DecodeOptions(window=window))
    assert np.array_equal(rgb[..., 0], rgb[..., 2])
    return rgb[..., 0], note


# ---------------------------------------------------------------- windowing arithmetic


def test_lung_window_maps_hounsfield_units_linearly_with_clipping(tmp_path: Path):
    # lung: level -600, width 1500 -> [-1350, 150]; -1050 HU is 300/1500 of the way: 51
    values, note = gray(hu_slice(tmp_path, [-2000, -1350, -1050, 150, 3000]), "lung")
    assert values[0].tolist() == [0, 0, 51, 255, 255] and note == "window lung"


@pytest.mark.parametrize(("window", "level", "width"),
                         [("mediastinum", 40, 400), ("bone", 400, 1800), ("brain", 40, 80)])
def test_preset_windows(tmp_path: Path, window, level, width):
    hu = [level - width / 2 - 10, level - width / 2, level + width / 4, level + width / 2, level + width]
    values, note = gray(hu_slice(tmp_path, hu), window)
    assert values[0].tolist() == [0, 0, round(0.75 * 255), 255, 255] and note == f"window {window}"


def test_monochrome1_is_inverted_after_windowing(tmp_path: Path):
    values, _ = gray(hu_slice(tmp_path, [-1350, -1050, 150], "MONOCHROME1"), "lung")
    assert values[0].tolist() == [255, 255 - 51, 0]


def test_crafted_file_without_modality_or_window_uses_minmax(tmp_path: Path):
    values, note = gray(hu_slice(tmp_path, [-1000, 0, 1000]))
    assert note == "minmax" and values[0].tolist() == [0, 128, 255]


# ---------------------------------------------------------------- pydicom's CT and MR files


def test_ct_small_tags_as_shipped(tmp_path: Path):
    dataset = pydicom.dcmread(shipped("CT_small.dcm", tmp_path))
    assert dataset.Modality == "CT" and "WindowCenter" not in dataset
    assert float(dataset.RescaleIntercept) == -1024
    assert dicom_tags(tmp_path / "CT_small.dcm")["Modality"] == "CT"


def test_ct_auto_without_header_window_is_lung_and_differs_from_minmax(tmp_path: Path):
    path = shipped("CT_small.dcm", tmp_path)
    auto, auto_note = gray(path)
    lung, lung_note = gray(path, "lung")
    minmax, minmax_note = gray(path, "minmax")
    assert (auto_note, lung_note, minmax_note) == ("window lung", "window lung", "minmax")
    assert np.array_equal(auto, lung) and not np.array_equal(lung, minmax)
    assert minmax.min() == 0 and minmax.max() == 255


def test_ct_auto_prefers_the_files_own_window(tmp_path: Path):
    path = edited(shipped("CT_small.dcm", tmp_path), tmp_path / "w.dcm", WindowCenter=40, WindowWidth=400)
    auto, note = gray(path)
    assert note == "window header (L40 W400)"
    assert np.array_equal(auto, gray(path, "mediastinum")[0]), "the same L/W as the mediastinum preset"
    assert np.array_equal(auto, gray(path, "header")[0])


def test_multi_valued_window_uses_the_first_pair(tmp_path: Path):
    path = edited(shipped("CT_small.dcm", tmp_path), tmp_path / "two.dcm",
                  WindowCenter=[-600, 40], WindowWidth=[1500, 400])
    values, note = gray(path, "header")
    assert note == "window header (L-600 W1500)" and np.array_equal(values, gray(path, "lung")[0])


def test_header_window_asked_for_but_absent_names_the_file_and_the_fix(tmp_path: Path):
    path = shipped("CT_small.dcm", tmp_path)
    with pytest.raises(BadImage, match=r"CT_small\.dcm.*no window of its own.*window=auto"):
        read_rgb(path, DecodeOptions(window="header"))


def test_mr_auto_uses_its_header_window_or_minmax(tmp_path: Path):
    path = shipped("MR_small.dcm", tmp_path)
    values, note = gray(path)
    assert note == "window header (L600 W1600)"
    bare = edited(path, tmp_path / "bare.dcm", WindowCenter=None, WindowWidth=None)
    bare_values, bare_note = gray(bare)
    assert bare_note == "minmax", "MR without a window: not the CT lung preset"
    assert not np.array_equal(values, bare_values)


def test_zero_width_header_window_is_not_a_window(tmp_path: Path):
    path = edited(shipped("CT_small.dcm", tmp_path), tmp_path / "zero.dcm", WindowCenter=40, WindowWidth=0)
    assert gray(path)[1] == "window lung"


def test_voi_lut_sequence_is_the_header_window(tmp_path: Path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    path = write_dicom(tmp_path / "lut.dcm", np.arange(256, dtype=np.uint16).reshape(16, 16))
    item = Dataset()
    item.LUTDescriptor = [256, 0, 8]  # 256 entries, first maps stored 0, 8-bit output
    item.add_new(0x00283006, "US", list(range(255, -1, -1)))  # LUT Data, inverting: unmistakably not minmax
    dataset = pydicom.dcmread(path)
    dataset.VOILUTSequence = Sequence([item])
    dataset.save_as(path)
    values, note = gray(path)
    assert note == "window header (VOI LUT)"
    assert values[0, 0] == 255 and values[-1, -1] == 0


# ---------------------------------------------------------------- odd files


def test_multi_frame_dicom_is_refused_with_the_reason(tmp_path: Path):
    path = write_dicom(tmp_path / "volume.dcm", np.zeros((8, 8), np.uint16))
    dataset = pydicom.dcmread(path)
    dataset.NumberOfFrames = 3
    dataset.PixelData = np.arange(3 * 64, dtype=np.uint16).tobytes()
    dataset.save_as(path)
    with pytest.raises(BadImage, match=r"volume\.dcm is a multi-frame DICOM \(3 frames\).*single-frame"):
        decode_file(path, 8)


def test_colour_dicom_is_used_as_colour(tmp_path: Path):
    path = write_dicom(tmp_path / "rgb.dcm", np.zeros((4, 4), np.uint16))
    dataset = pydicom.dcmread(path)
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 200
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation, dataset.PlanarConfiguration = 3, "RGB", 0
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 8, 8, 7
    dataset.PixelData = rgb.tobytes()
    dataset.save_as(path)
    decoded, note = read_rgb(path, DecodeOptions(window="lung"))
    assert note == "dicom colour" and decoded[0, 0].tolist() == [200, 0, 0]


def test_upper_case_dcm_suffix(tmp_path: Path):
    path = hu_slice(tmp_path, [-1350, 150], name="SLICE.DCM")
    assert gray(path, "lung")[0][0].tolist() == [0, 255]
    upper = Path(shutil.copy(shipped("CT_small.dcm", tmp_path), tmp_path / "CT.DCM"))
    assert dicom_tags(upper)["Modality"] == "CT" and gray(upper)[1] == "window lung"


def test_dicom_without_dcm_suffix_is_recognised_by_its_marker(tmp_path: Path):
    path = hu_slice(tmp_path, [-1350, 150], name="IM0001.png")
    assert gray(path, "lung")[0][0].tolist() == [0, 255]


def test_dicom_without_pixel_data_is_a_bad_image(tmp_path: Path):
    path = write_dicom(tmp_path / "header_only.dcm", np.zeros((4, 4), np.uint16))
    dataset = pydicom.dcmread(path)
    del dataset.PixelData
    dataset.save_as(path)
    with pytest.raises(BadImage, match=r"header_only\.dcm"):
        decode_file(path, 8)


def test_unknown_window_names_the_valid_ones():
    with pytest.raises(BenchmarkError, match="window=soft.*auto, header, minmax, lung, mediastinum, bone"):
        DecodeOptions(window="soft")


# ---------------------------------------------------------------- PACS exports without extensions

SLICE_NAMES = ("IM-0001", "00000002", "1.2.826.0.1.3680043.8.498.3")  # PACS slice names: none end in .dcm


def pacs_export(root: Path) -> list[str]:
    """<class>/P<NN>/<slice> DICOM files without a .dcm suffix, plus junk; returns the slices' ids."""
    ids = []
    for k, klass in enumerate(("covid", "normal")):
        for patient in range(5):
            for s, name in enumerate(SLICE_NAMES):
                pixels = np.random.default_rng([k, patient, s]).integers(0, 4000, (16, 16))
                (root / klass / f"P{k}{patient}").mkdir(parents=True, exist_ok=True)
                write_dicom(root / klass / f"P{k}{patient}" / name, pixels, intercept=-1024)
                ids.append(f"{klass}/P{k}{patient}/{name}")
        for junk in ("notes.txt", "series.csv", "meta.json", "README.md", "Thumbs.db", "a.bak", "LOCK"):
            (root / klass / f"P{k}0" / junk).write_text("not an image, not DICOM\n" * 10)
        (root / klass / f"P{k}0" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + b"\0" * 200)
    return sorted(ids)


@pytest.mark.parametrize("key", ["group_depth", "group_pattern", "groups"])
def test_dicom_slices_without_an_extension_are_listed_grouped_and_decoded(tmp_path: Path, key: str):
    from omegaconf import OmegaConf

    from benchmark.data import load_dataset

    ids = pacs_export(tmp_path / "export")
    (tmp_path / "groups.csv").write_text("file,group\n" + "".join(f"{i},{i.split('/')[1]}\n" for i in ids))
    value = {"group_depth": 1, "group_pattern": r"/(P\d+)/", "groups": str(tmp_path / "groups.csv")}[key]
    cfg = OmegaConf.create({"loader": "folder", "name": None, "path": str(tmp_path / "export"),
                            "split": [0.6, 0.2, 0.2], "val_fraction": 0.2, "split_seed": 0, key: value})
    dataset = load_dataset(cfg, tmp_path, tmp_path / "cache")
    listed = {i: g for s in dataset.splits.values() for i, g in zip(s.ids, s.groups, strict=True)}
    assert sorted(listed) == ids, "every extensionless slice listed, no junk"
    assert all(group == image_id.split("/")[1] for image_id, group in listed.items())
    assert dataset.records["skipped"] == [] and dataset.records["decoding"]["applied"] == {"minmax": 30}


def test_a_header_window_asked_of_files_without_one_stops_the_load_not_skips_them(tmp_path: Path):
    """QA: dataset.window=header skipped 42 of 85 slices as "unreadable" and trained on the rest; the
    setting does not fit the data, which is one error, not 42 bad files."""
    from omegaconf import OmegaConf

    from benchmark.data import load_dataset

    ids = pacs_export(tmp_path / "export")
    cfg = OmegaConf.create({"loader": "folder", "name": None, "path": str(tmp_path / "export"),
                            "split": [0.6, 0.2, 0.2], "val_fraction": 0.2, "split_seed": 0, "group_depth": 1,
                            "window": "header"})
    with pytest.raises(BenchmarkError) as refused:
        load_dataset(cfg, tmp_path, tmp_path / "cache")
    message = str(refused.value)
    assert message.startswith(f"dataset.window=header, but {len(ids)} of {len(ids)} image files have no")
    assert "use dataset.window=auto" in message and "lung" in message and "\n" not in message
