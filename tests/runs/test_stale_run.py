"""`python -m benchmark` on a run that is complete but was trained on other data: it runs again, its data
loaded once (the resume check's load is the run's)."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.runs import resume
from benchmark.runs.identity import resolve
from tests.conftest import compose_config, run_cli, tiny_overrides


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


def test_a_run_published_meanwhile_under_force_is_not_told_to_use_force(saved_run, caplog):
    """With force=true a run is skipped only when another run published it meanwhile (the run is new): the
    skip line must not tell the user to add the force=true they gave."""
    root = saved_run[0].parents[4]
    lines = {}
    for force in ("false", "true"):
        cfg = compose_config(root, f"force={force}")
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="benchmark.runs.resume"):
            assert resume.still_done(cfg, resolve(cfg), resume.load(cfg)) is not None
        (lines[force],) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skip:")]
    assert lines["false"].endswith("(force=true re-runs it)")
    assert "force=true" not in lines["true"]
