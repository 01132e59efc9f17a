"""Every user error of the issue's list: one line that names the problem and the fix, and no run written.

In-process (the compose + run a command does); tests/commands/test_cli.py checks on real subprocesses
that such an error becomes that one `error:` line with exit code 2.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from benchmark.cli import USER_ERRORS, one_line
from tests.conftest import CONF, tiny_overrides


def images(folder: Path, n: int, value: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).save(folder / f"img{i:03d}.png")
    return folder


def presplit(root: Path, train: tuple[str, ...], test: tuple[str, ...]) -> Path:
    for klass in train:
        images(root / "train" / klass, 8, ord(klass[0]))
    for klass in test:
        images(root / "test" / klass, 3, ord(klass[0]) + 1)
    return root


def folder(root: Path, **classes: int) -> list[str]:
    for klass, n in classes.items():
        if n:
            images(root / klass, n, len(klass))
        else:
            (root / klass).mkdir(parents=True)
    return ["dataset=folder", f"dataset.path={root}"]


def npz(root: Path, labels_high: int = 3, truncated: bool = False) -> Path:
    path = root / "x.npz"
    root.mkdir(parents=True, exist_ok=True)
    arrays = {f"{s}_images": np.zeros((6, 8, 8), np.uint8) for s in ("train", "val", "test")}
    arrays |= {f"{s}_labels": (np.arange(6) % labels_high).reshape(-1, 1) for s in ("train", "val", "test")}
    np.savez(path, **arrays)
    if truncated:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def weights_of(name: str, path: Path) -> Path:
    from backbones.registry import build, get

    build(get(name), 32, None).save_weights(path)
    return path


CASES: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "unknown backbone": (lambda t: ["backbone=resnet18"], "choose one of: densenet121"),
    "unknown dataset": (lambda t: ["dataset=imagenet"], "choose one of: folder, medmnist, synthetic"),
    "unknown train mode": (lambda t: ["train=distill"], "choose one of: finetune, frozen"),
    "unknown preset": (lambda t: ["experiment=smith2023"], "choose one of: bormane2024_all_backbones"),
    "misspelled config key": (lambda t: ["trian.lr=0.1"], "trian.lr is not a setting"),
    "missing dataset.path": (lambda t: ["dataset=folder"], "dataset.path is required"),
    "a file where a folder is expected": (
        lambda t: ["dataset=folder", f"dataset.path={images(t / 'd', 1) / 'img000.png'}"], "is not a folder"),
    "an empty class folder": (lambda t: folder(t / "d", a=4, b=0),  # QA: not "remove the folder" alone
                              "add images to it, or remove the class (its folder in every split)"),
    "test classes not equal to train classes": (
        lambda t: ["dataset=folder", f"dataset.path={presplit(t / 'd', ('a', 'b'), ('a', 'z'))}"],
        "class folders ['z'] that train/ lacks"),
    "test classes that differ from train's in case only": (  # QA: normal vs Normal was not pointed out
        lambda t: ["dataset=folder", f"dataset.path={presplit(t / 'd', ('a', 'b'), ('a', 'B'))}"],
        "class folders ['B'] that train/ lacks: the class lists must match; differ in case only: B (train/ "
        "has b), rename one of each"),
    "a split missing a class": (
        lambda t: ["dataset=folder", f"dataset.path={presplit(t / 'd', ('a', 'b'), ('a',))}"],
        "test/ has no images of class 'b'"),
    "fewer than two classes": (lambda t: folder(t / "d", only=6), "a classifier needs at least 2"),
    "fewer images than a stratified split needs": (
        lambda t: folder(t / "d", a=2, b=2), "cannot split off a stratified"),
    "split fractions not summing to 1": (
        lambda t: ["dataset.split=[0.5,0.2,0.2]"], "must be three positive train/val/test fractions"),
    "negative split fraction": (
        lambda t: ["dataset.split=[1.2,-0.4,0.2]"], "must be three positive train/val/test fractions"),
    "a scoring-only split for training": (
        lambda t: ["dataset.split=[0,0,1]"], "which only scoring can use: give train/val fractions"),
    "image_size below the backbone's minimum": (lambda t: ["image_size=16"], "below mobilenetv2's minimum"),
    "image_size not an integer": (lambda t: ["image_size=12.5"], "is not a whole number of pixels"),
    "no epochs": (lambda t: ["train.max_epochs=0"], "train.max_epochs=0 must be a whole number of at least"),
    "a dropout of all units": (lambda t: ["head.dropout=1"], "head.dropout=1 must be a fraction"),
    "a negative fine-tuning rate": (
        lambda t: ["train=finetune", "train.finetune_lr=-1e-5"], "train.finetune_lr=-1e-05 must be"),
    "a truncated .npz": (
        lambda t: ["dataset=medmnist", f"dataset.path={npz(t / 'n', truncated=True)}"],
        "is truncated or not"),
    "npz labels out of range of the class names": (
        lambda t: ["dataset=medmnist", f"dataset.path={npz(t / 'n', labels_high=5)}",
                   "dataset.class_names=[a,b,c]"], "has 3 names but the labels are 0..4"),
    "more class names than labels": (
        lambda t: ["dataset=medmnist", f"dataset.path={npz(t / 'n')}", "dataset.class_names=[a,b,c,d]"],
        "has 4 names but the labels are 0..2"),
    "a weights path that does not exist": (
        lambda t: [f"backbone.weights={t / 'nope.weights.h5'}"], "does not exist"),
    "a weights file of another backbone": (
        lambda t: [f"backbone.weights={weights_of('resnet50', t / 'resnet50.weights.h5')}"], "does not fit"),
    "a results directory that is not writable": (
        lambda t: [f"results_dir={images(t / 'd', 1) / 'img000.png' / 'results'}"], "is not writable"),
}


def error_line(tmp: Path, overrides: list[str]) -> str:
    """The one line a user sees: Hydra's composition error, or the run's own user error."""
    from benchmark.runs.pipeline import run

    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            synthetic = not any(o.startswith("dataset=") for o in overrides)
            every = tiny_overrides(tmp, *overrides, synthetic=synthetic)
            cfg = compose(config_name="config", overrides=every)
        run(cfg)
    except USER_ERRORS as error:
        return one_line(error)
    except Exception as error:  # Hydra's composition errors, as benchmark.cli.run_hydra reports them
        if type(error).__module__.split(".")[0] not in ("hydra", "omegaconf"):
            raise
        return one_line(error)
    raise AssertionError("no error")


@pytest.mark.parametrize("case", CASES)
def test_user_error_is_one_clear_line_and_writes_no_run(case: str, tmp_path: Path):
    setup, expected = CASES[case]
    line = error_line(tmp_path, setup(tmp_path))
    assert expected in line and "\n" not in line, line
    assert not list((tmp_path / "results").glob("runs/*/*/*")), "an error must not look like a run"
