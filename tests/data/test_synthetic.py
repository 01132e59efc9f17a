"""Tests for the synthetic chest-CT generator: the tree on disk, caching, determinism and class signal."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data import synthetic
from benchmark.data.synthetic import CLASS_NAMES, GENERATOR_VERSION, dataset_dir, generate, render_slice

TREE_SIZE = 48  # small images keep the file-level tests fast
TREE_N = 3
SIGNAL_SIZE = 128  # the project's default resolution, for the class-signal tests
SIGNAL_PAIRS = 20  # images averaged per class-signal assertion


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def _pair(label: str, k: int, difficulty: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """A normal slice and a `label` slice from identically seeded generators: same anatomy and noise."""
    normal = render_slice("normal", np.random.default_rng([99, k]), SIGNAL_SIZE, difficulty)
    other = render_slice(label, np.random.default_rng([99, k]), SIGNAL_SIZE, difficulty)
    return normal.astype(float), other.astype(float)


def _lung_region(image: np.ndarray) -> np.ndarray:
    """Dark pixels in the middle of the image: lung, since the torso fills the centre and air is outside."""
    size = image.shape[0]
    centre = np.zeros_like(image, dtype=bool)
    centre[size // 4 : 3 * size // 4, size // 8 : 7 * size // 8] = True
    return centre & (image < 70)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("data"), TREE_N, TREE_SIZE, 0, 0.5)


def test_generate_writes_every_class_as_8bit_grayscale(tree: Path) -> None:
    assert sorted(p.name for p in tree.iterdir()) == sorted(CLASS_NAMES)
    for label in CLASS_NAMES:
        names = sorted(p.name for p in (tree / label).iterdir())
        assert names == [f"{label}_{i:04d}.png" for i in range(TREE_N)]
        for name in names:
            with Image.open(tree / label / name) as image:
                assert image.format == "PNG"
                assert image.mode == "L"
                assert image.size == (TREE_SIZE, TREE_SIZE)


def test_generate_names_the_folder_after_every_parameter(tmp_path: Path) -> None:
    expected = tmp_path / f"synthetic-v{GENERATOR_VERSION}-n200-s128-seed0-d0.5"
    assert dataset_dir(tmp_path, 200, 128, 0, 0.5) == expected
    params = [
        (200, 128, 0, 0.5),
        (201, 128, 0, 0.5),
        (200, 64, 0, 0.5),
        (200, 128, 1, 0.5),
        (200, 128, 0, 0.6),
    ]
    assert len({dataset_dir(tmp_path, *args) for args in params}) == len(params)


def test_second_call_reuses_the_tree_without_rendering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = generate(tmp_path, TREE_N, TREE_SIZE, 0, 0.5)
    mtimes = {p: p.stat().st_mtime_ns for p in first.rglob("*")}

    def must_not_render(*args: object) -> np.ndarray:
        raise AssertionError("render_slice called for a cached tree")

    monkeypatch.setattr(synthetic, "render_slice", must_not_render)
    assert generate(tmp_path, TREE_N, TREE_SIZE, 0, 0.5) == first
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*")} == mtimes


@pytest.mark.parametrize("slices_per_patient", [1, 3])
def test_a_tree_missing_an_image_is_generated_again_with_a_warning(
    tmp_path: Path, slices_per_patient: int, caplog: pytest.LogCaptureFixture
) -> None:
    target = generate(tmp_path, 4, TREE_SIZE, 0, 0.5, slices_per_patient=slices_per_patient)
    whole = _files(target)
    assert sorted(whole) == sorted(synthetic.expected_files(4, slices_per_patient)) and len(whole) == 3 * 4
    removed = sorted((target / "tumor").iterdir())[1]
    removed.unlink()  # deleted by hand, a partial copy
    assert generate(tmp_path, 4, TREE_SIZE, 0, 0.5, slices_per_patient=slices_per_patient) == target
    assert _files(target) == whole
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"{target} lacks 1 of its 12 images (tumor/{removed.name}): generating it again" == warning
    assert list(tmp_path.iterdir()) == [target]


def test_generate_leaves_no_temporary_folder(tmp_path: Path) -> None:
    target = generate(tmp_path, TREE_N, TREE_SIZE, 0, 0.5)
    assert list(tmp_path.iterdir()) == [target]


def test_interrupted_generate_leaves_nothing_that_looks_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real_render = synthetic.render_slice

    def fail_midway(*args: object) -> np.ndarray:
        calls.append(args)
        if len(calls) > 4:
            raise KeyboardInterrupt
        return real_render(*args)

    monkeypatch.setattr(synthetic, "render_slice", fail_midway)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path, TREE_N, TREE_SIZE, 0, 0.5)
    assert list(tmp_path.iterdir()) == []


def test_same_parameters_give_byte_identical_files(tree: Path, tmp_path: Path) -> None:
    again = generate(tmp_path, TREE_N, TREE_SIZE, 0, 0.5)
    assert again != tree
    assert _files(again) == _files(tree)


def test_different_seed_gives_different_images(tree: Path, tmp_path: Path) -> None:
    other = _files(generate(tmp_path, TREE_N, TREE_SIZE, 1, 0.5))
    same_names = _files(tree)
    assert other.keys() == same_names.keys()
    assert all(other[name] != same_names[name] for name in other)


def test_render_slice_looks_like_a_ct_slice() -> None:
    image = render_slice("normal", np.random.default_rng(0), SIGNAL_SIZE, 0.5)
    assert image.shape == (SIGNAL_SIZE, SIGNAL_SIZE)
    assert image.dtype == np.uint8
    corners = np.concatenate([image[:8, :8].ravel(), image[-8:, -8:].ravel()])
    assert corners.mean() < 30  # air outside the body
    assert image.max() > 200  # bone
    assert _lung_region(image).mean() > 0.1  # the lungs fill a good part of the middle


def test_pneumonia_raises_lung_intensity() -> None:
    gains = []
    for k in range(SIGNAL_PAIRS):
        normal, pneumonia = _pair("pneumonia", k)
        lungs = _lung_region(normal)
        gains.append((pneumonia - normal)[lungs].mean())
        assert np.abs(pneumonia - normal)[~lungs].mean() < 3  # the haze stays in the lungs
    assert np.mean(gains) > 5
    assert np.mean(np.array(gains) > 1) >= 0.9


def test_tumor_adds_one_compact_bright_spot_in_a_lung() -> None:
    peaks, areas, in_lung = [], [], []
    for k in range(SIGNAL_PAIRS):
        normal, tumor = _pair("tumor", k)
        diff = tumor - normal
        peak = np.unravel_index(np.argmax(diff), diff.shape)
        peaks.append(diff[peak])
        areas.append(np.mean(diff > diff[peak] / 2))
        in_lung.append(_lung_region(normal)[peak])
    assert np.mean(peaks) > 40
    assert np.max(areas) < 0.03  # compact: a few percent of the image at most
    assert np.mean(in_lung) >= 0.9


def test_higher_difficulty_gives_fainter_lesions() -> None:
    def lesion_strength(label: str, difficulty: float) -> float:
        return float(np.mean([(lambda n, o: (o - n).sum())(*_pair(label, k, difficulty)) for k in range(10)]))

    for label in ("pneumonia", "tumor"):
        assert lesion_strength(label, 0.1) > 1.5 * lesion_strength(label, 0.9)


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"n_per_class": 0}, "0"),
        ({"size": 16}, "16"),
        ({"difficulty": 1.5}, "1.5"),
        ({"difficulty": -0.1}, "-0.1"),
        ({"seed": -1}, "-1"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_value(tmp_path: Path, kwargs: dict, bad: str) -> None:
    args = {"data_dir": tmp_path, "n_per_class": 2, "size": 64, "seed": 0, "difficulty": 0.5} | kwargs
    with pytest.raises(ValueError, match=bad):
        generate(**args)
    assert list(tmp_path.iterdir()) == []


def test_unknown_label_names_the_label_and_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="covid") as err:
        render_slice("covid", np.random.default_rng(0), 64, 0.5)
    assert all(label in str(err.value) for label in CLASS_NAMES)


@pytest.mark.parametrize(("size", "difficulty"), [(16, 0.5), (64, 2.0)])
def test_render_slice_validates_size_and_difficulty(size: int, difficulty: float) -> None:
    with pytest.raises(ValueError, match=str(size if size < 32 else difficulty)):
        render_slice("normal", np.random.default_rng(0), size, difficulty)


def test_slices_per_patient_one_keeps_the_default_folder_name(tmp_path: Path) -> None:
    default = dataset_dir(tmp_path, 200, 128, 0, 0.5)
    assert dataset_dir(tmp_path, 200, 128, 0, 0.5, slices_per_patient=1) == default
    assert dataset_dir(tmp_path, 200, 128, 0, 0.5, slices_per_patient=4) == Path(f"{default}-k4")


@pytest.mark.parametrize("bad", [0, 1.5, -2])
def test_bad_slices_per_patient_raises_value_error_naming_it(tmp_path: Path, bad: float) -> None:
    with pytest.raises(ValueError, match="slices_per_patient"):
        generate(tmp_path, 2, 64, 0, 0.5, slices_per_patient=bad)
    assert list(tmp_path.iterdir()) == []


def test_patients_are_near_identical_slices_with_a_findable_patient(tmp_path: Path) -> None:
    import re

    from benchmark.data.synthetic import PATIENT_PATTERN

    root = generate(tmp_path, 4, TREE_SIZE, 0, 0.5, slices_per_patient=3)
    assert root.name.endswith("-k3")
    files = _files(root)
    assert sorted(files) == [
        f"{label}/{label}_p{2 * c + j:04d}_s{s:02d}.png"
        for c, label in enumerate(CLASS_NAMES)
        for j, count in enumerate((3, 1))  # 4 images per class: a patient of 3 slices and one of 1
        for s in range(count)
    ]
    patients = {name: re.search(PATIENT_PATTERN, name).group(1) for name in files}
    assert len(set(patients.values())) == 2 * len(CLASS_NAMES)  # patient ids unique across classes

    def pixels(name: str) -> np.ndarray:
        with Image.open(root / name) as image:
            return np.asarray(image, dtype=float)

    first, second, third = (pixels(f"tumor/tumor_p0004_s{s:02d}.png") for s in range(3))
    other = pixels("tumor/tumor_p0005_s00.png")
    same = np.mean([np.abs(first - second).mean(), np.abs(first - third).mean()])
    assert not np.array_equal(first, second)  # each slice has its own noise and jitter
    assert np.abs(first - other).mean() > 2 * same  # another patient differs far more
    assert _files(generate(tmp_path / "again", 4, TREE_SIZE, 0, 0.5, slices_per_patient=3)) == files


def test_a_patient_tree_splits_by_patient_with_the_pattern(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from benchmark.data.folder import load_folder
    from benchmark.data.synthetic import PATIENT_PATTERN

    root = generate(tmp_path, 8, 32, 0, 0.5, slices_per_patient=2)
    cfg = OmegaConf.create({"split": [0.7, 0.1, 0.2], "split_seed": 0, "group_pattern": PATIENT_PATTERN})
    _, splits = load_folder(root, cfg)
    seen = [set(split.groups) for split in splits.values()]
    assert sum(len(s) for s in seen) == len(set().union(*seen)) == 4 * len(CLASS_NAMES)  # none shared
