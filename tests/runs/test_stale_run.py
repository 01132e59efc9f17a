"""`python -m benchmark` on a run that is complete but was trained on other data: it runs again, its data
loaded once (the resume check's load is the run's)."""

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import run_cli, tiny_overrides


def test_a_run_trained_on_other_data_is_trained_again_on_one_load(saved_run, tmp_path: Path):
    run_dir, data_root = saved_run
    root = run_dir.parents[4]  # holds results/, cache/ and data/
    shutil.copytree(root, tmp_path, dirs_exist_ok=True)
    image = tmp_path / data_root.relative_to(root) / "tumor" / "tumor_0000.png"
    pixels = np.asarray(Image.open(image)).copy()
    pixels[0, 0] ^= 1  # one pixel of one image changed: other data
    Image.fromarray(pixels).save(image)
    before = json.loads((run_dir / "metrics.json").read_text())

    result = run_cli(tiny_overrides(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert log.count("was trained on other data") == 1 and log.count("dataset synthetic:") == 1, log[-3000:]
    again = json.loads((tmp_path / run_dir.relative_to(root) / "metrics.json").read_text())
    assert again["config_hash"] == before["config_hash"]
    assert again["dataset_fingerprint"] != before["dataset_fingerprint"]
