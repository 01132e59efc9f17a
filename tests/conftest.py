"""Shared fixtures: the real config tree, shrunk to seconds (tiny data, minimum sizes, random init)."""

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Small enough for a 2-core CPU: ~45 images at 32 px, few epochs, few timing repeats.
TINY = [
    "backbone.weights=null",
    "image_size=32",
    "train.max_epochs=3",
    "evaluate.n_bootstrap=200",
    "efficiency.warmup=1",
    "efficiency.latency_runs=2",
    "efficiency.throughput_batch=4",
    "efficiency.throughput_batches=1",
    "explain.n_images=0",  # Grad-CAM is exercised by the end-to-end CLI test and tests/saliency/
    "report.ensemble_k=0",  # a sweep's own leaderboard without the ensemble (tests/report/ covers it)
]


TINY_SYNTHETIC = ["dataset.n_per_class=15", "dataset.size=48"]  # 45 generated images of 48 px


def tiny_overrides(tmp: Path, *extra: str, synthetic: bool = True) -> list[str]:
    """The tiny settings plus paths under `tmp`; synthetic=False for the folder and medmnist loaders."""
    return [*TINY, *(TINY_SYNTHETIC if synthetic else []), f"results_dir={tmp / 'results'}",
            f"cache_dir={tmp / 'cache'}", f"data_dir={tmp / 'data'}", *extra]


def compose_config(tmp: Path, *extra: str, synthetic: bool = True) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=tiny_overrides(tmp, *extra, synthetic=synthetic))


def run_cli(
    args: list[str],
    env: dict[str, str] | None = None,
    module: str = "benchmark",
    timeout: int = 300,
    cwd: Path = ROOT,
) -> subprocess.CompletedProcess:
    """`python -m <module> args` as a user would type it, from the repository root (or `cwd`)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


@pytest.fixture
def tiny_cfg(tmp_path: Path):
    """A factory: tiny_cfg('seed=1', ...) composes the real config with the tiny overrides."""
    return lambda *extra, synthetic=True: compose_config(tmp_path, *extra, synthetic=synthetic)


@dataclass(frozen=True)
class Sweep:
    root: Path  # holds results/, cache/ and data/
    log: str

    def copy_to(self, target: Path) -> "Sweep":
        """A private copy for a test that changes the tree."""
        shutil.copytree(self.root, target, dirs_exist_ok=True)
        return Sweep(target, self.log)


SWEEP_CELLS = ["+sweep=all_backbones", "backbone=mobilenetv2,resnet50,inceptionv3", "seed=0,1"]


def shared_once(tmp_path_factory, worker_id: str, name: str, make: Callable[[Path], None]) -> Path:
    """A folder made once for the whole test session, also when `pytest -n 2` runs several worker
    processes (pytest-xdist's documented pattern: a file lock in the directory the workers share)."""
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if worker_id != "master" else base) / name
    with FileLock(f"{shared}.lock"):
        if not (shared / ".complete").exists():
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir(parents=True)
            make(shared)
            (shared / ".complete").touch()
    return shared


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory, worker_id) -> Sweep:
    """The suite's one real multirun: 3 backbones x 2 seeds; inceptionv3 cannot take 32 px and fails alone.

    Shared by the sweep and report tests (a multirun is the slowest thing the suite does), made once per
    session; treat it as read-only and `copy_to` a tmp_path before changing it.
    """

    def make(root: Path) -> None:
        result = run_cli(["--multirun", *SWEEP_CELLS, *tiny_overrides(root)], timeout=600)
        assert result.returncode == 1, result.stderr[-3000:]  # its failed cells: the leaderboard, then 1
        (root / "sweep.log").write_text(result.stdout + result.stderr)

    root = shared_once(tmp_path_factory, worker_id, "tiny_sweep", make)
    return Sweep(root, (root / "sweep.log").read_text())


def write_dicom(path: Path, pixels, photometric: str = "MONOCHROME2", intercept: float = 0.0,
                sop_instance_uid: str | None = None) -> Path:
    """A real single-frame 16-bit CT DICOM file (pydicom), as a scanner export would be; with
    `sop_instance_uid`, the instance it is (a re-export of one instance keeps its UID)."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT image storage
    meta.MediaStorageSOPInstanceUID = sop_instance_uid or generate_uid()
    ds = pydicom.Dataset()
    ds.file_meta = meta
    if sop_instance_uid:
        ds.SOPInstanceUID = sop_instance_uid
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 16, 15, 0
    ds.PhotometricInterpretation = photometric
    ds.RescaleSlope, ds.RescaleIntercept = 1, intercept
    ds.PixelData = pixels.astype("uint16").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def make_saved_run(root: Path) -> None:
    from benchmark.runs.pipeline import run

    run(compose_config(root))


@pytest.fixture(scope="session")
def saved_run(tmp_path_factory, worker_id) -> tuple[Path, Path]:
    """One finished run with its model, made once per session (read-only for the tests)."""
    tmp = shared_once(tmp_path_factory, worker_id, "predict_run", make_saved_run)
    (run_dir,) = (tmp / "results" / "runs" / "synthetic" / "mobilenetv2").glob("seed0-*")
    return run_dir, run_data_root(run_dir)


def run_data_root(run_dir: Path) -> Path:
    """The image tree the run was trained on, from its own config: other tests' commands (an external
    site) generate other synthetic trees beside it in the same data folder."""
    from benchmark.data import files_root

    cfg = OmegaConf.load(run_dir / "config.yaml")
    return files_root(cfg.dataset, Path(cfg.data_dir))
