"""The sweep's ETA: a configuration's first cell and its further seeds are timed apart."""

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from benchmark.files import write_json
from benchmark.runs.progress import cell_name, eta, finished_cells, varied_keys
from tests.conftest import CONF, run_cli, tiny_overrides


def cell(configuration: str, seconds: float, first: bool, skipped: bool = False) -> dict:
    return {"configuration": configuration, "seconds": seconds, "first": first, "skipped": skipped}


def test_no_cell_timed_yet_gives_no_eta():
    assert eta([], total=21, configurations=7, parallel=1) == ""
    assert eta([cell("backbone=a", 0.1, True, skipped=True)], total=21, configurations=7, parallel=1) == ""


def test_the_further_seeds_are_named_until_one_is_timed():
    done = [cell("backbone=a", 20.0, True), cell("backbone=b", 19.0, True)]  # 5 first cells left
    expected = ", ETA 1.6 min + 14 further-seed cells not timed yet"
    assert eta(done, total=21, configurations=7, parallel=1) == expected


def test_first_and_further_cells_have_their_own_means():
    """A default frozen sweep: slow first seeds, cheap further ones. One mean over both would say
    (7 x 20 + 1 x 0.5) / 8 x 13 = 228 s here; the cells left cost 13 x 0.5 s."""
    done = [cell(f"backbone={name}", 20.0, True) for name in "abcdefg"] + [cell("backbone=a", 0.5, False)]
    assert eta(done, total=21, configurations=7, parallel=1) == ", ETA 6 s"
    assert eta(done, total=21, configurations=7, parallel=2) == ", ETA 3 s"


def test_a_resumed_configuration_is_not_counted_as_a_first_cell_left():
    done = [cell("backbone=a", 0.2, True, skipped=True), cell("backbone=b", 30.0, True),
            cell("backbone=a", 1.0, False)]
    # first cells left: c (3 configurations, a and b seen); further: 6 - 3 done - 1 = 2
    assert eta(done, total=6, configurations=3, parallel=1) == ", ETA 32 s"


def test_a_marker_still_being_written_by_another_worker_is_not_read(tmp_path):
    """write_json writes `.<name>.<hex>.tmp.json` first; a parallel launcher's cell may list the folder
    while another worker's marker is in that state."""
    write_json(tmp_path / "1.json", cell("backbone=b", 2.0, True))
    write_json(tmp_path / "0.json", cell("backbone=a", 3.0, True))
    (tmp_path / ".2.1a2b.tmp.json").write_text("{")
    assert [found["seconds"] for found in finished_cells(tmp_path)] == [3.0, 2.0]


def test_a_cell_line_names_the_swept_settings_besides_backbone_and_seed():
    """Two cells of one backbone and seed in a sweep over regimes or sizes must not read the same."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        sweep = compose(config_name="config", overrides=["+sweep=all_backbones"], return_hydra_config=True)
        assert varied_keys(sweep) == []  # the default sweep: backbone x seed only
        with open_dict(sweep):
            sweep.hydra.sweeper.params["train"] = "frozen,finetune"
            sweep.hydra.sweeper.params["image_size"] = "128,160"
        varied = varied_keys(sweep)
    assert varied == ["train", "image_size"]
    cell = OmegaConf.create({"backbone": {"name": "densenet121"}, "seed": 1, "hydra": {"overrides": {"task": [
        "+sweep=all_backbones", "seed=1", "backbone=densenet121", "train=finetune", "image_size=160",
        "dataset.path=/data/ct"]}}})
    assert cell_name(cell, varied) == "densenet121 seed=1 train=finetune image_size=160"
    assert cell_name(cell) == "densenet121 seed=1"


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=workers", "hydra.launcher.n_jobs=2"]],
                         ids=["one process", "joblib workers"])
def test_a_failed_cells_line_names_the_swept_settings(tmp_path, launcher):
    """Both regimes of one backbone and seed fail (no such dataset folder): their FAILED lines differ, in
    the sweep's own process and in joblib's worker processes (each reads the sweep's multirun.yaml)."""
    result = run_cli(["--multirun", "train=frozen,finetune", "dataset=folder",
                      f"dataset.path={tmp_path / 'absent'}", *launcher,
                      *tiny_overrides(tmp_path, synthetic=False)], timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 1, log[-3000:]  # failed cells
    failed = sorted(line.split("[ERROR] - ", 1)[1] for line in log.splitlines() if " FAILED: " in line
                    and "[ERROR]" in line)
    assert [line.split(" FAILED: ")[0] for line in failed] == [
        "cell mobilenetv2 seed=0 train=finetune", "cell mobilenetv2 seed=0 train=frozen"], log[-3000:]
