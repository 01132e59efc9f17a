"""What the commands that use a finished run (predict, export, explain) say about a run they cannot use:
one line naming the problem and a fix the command or the training accepts, before any work."""

import json
import shutil
from pathlib import Path

import pytest

from benchmark import cli, explain, export, predict
from tests.conftest import compose_config, run_cli, tiny_overrides

COMMANDS = {"predict": predict.work, "export": export.work, "explain": explain.explain_run}


def error_of(name: str, argv: list[str], capsys) -> str:
    """The one `error:` line of `python -m benchmark.<name> argv`, run in this process (exit code 2)."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(name, COMMANDS[name], argv)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert exit_.value.code == 2 and len(errors) == 1, errors
    return errors[0]


def arguments(name: str, run_dir: Path, data_root: Path) -> list[str]:
    return [f"run={run_dir}", *([f"input={data_root}"] if name == "predict" else [])]


@pytest.mark.parametrize("name", COMMANDS)
def test_a_failed_run_says_why_it_failed(saved_run, tmp_path: Path, capsys, name):
    """The failed.json a sweep writes for a cell that cannot run, not "finish it first"."""
    from benchmark.errors import BenchmarkError
    from benchmark.runs.pipeline import record_failure, run

    cfg = compose_config(tmp_path, "backbone=inceptionv3")  # 32 px: below its minimum of 75
    with pytest.raises(BenchmarkError) as error:
        run(cfg)
    run_dir = record_failure(cfg, error.value)
    assert {p.name for p in run_dir.iterdir()} == {"failed.json"}
    line = error_of(name, arguments(name, run_dir, saved_run[1]), capsys)
    assert line.startswith(f"error: run {run_dir} failed, so it has no model (BenchmarkError: image_size=32 "
                           "is below inceptionv3's minimum of 75: set image_size>=75"), line
    assert line.endswith(f"train it again (the traceback is in {run_dir}/failed.json)")
    assert "finish it first" not in line


@pytest.fixture
def ensemble_run(saved_run, tmp_path: Path) -> tuple[Path, list[Path]]:
    """A real top-2 ensemble (benchmark.report.ensemble) of the shared run and a copy filed as resnet50."""
    from benchmark.report.ensemble import build_ensembles

    run_dir, _ = saved_run
    results = tmp_path / "results"
    shutil.copytree(run_dir.parents[3], results)
    mobilenet = results / run_dir.relative_to(run_dir.parents[3])
    resnet = results / "runs" / "synthetic" / "resnet50" / run_dir.name
    shutil.copytree(mobilenet, resnet)
    metrics = json.loads((resnet / "metrics.json").read_text())
    (resnet / "metrics.json").write_text(json.dumps({**metrics, "backbone": "resnet50"}))
    (ensemble,) = build_ensembles(results, 2, None)
    return ensemble, [mobilenet.resolve(), resnet.resolve()]


@pytest.mark.parametrize("name", COMMANDS)
def test_an_ensemble_names_its_member_runs(saved_run, ensemble_run, capsys, name):
    """Not "re-run it with train.save_model=true": an ensemble has no model to save."""
    ensemble, members = ensemble_run
    line = error_of(name, arguments(name, ensemble, saved_run[1]), capsys)
    assert line == (f"error: run {ensemble} is an ensemble (averaged probabilities of other runs), not a "
                     f"saved model: pass one of its member runs instead: {members[0]}, {members[1]}")


@pytest.fixture
def moved_folder_run(saved_run, tmp_path: Path) -> tuple[Path, Path]:
    """A real run of dataset=folder whose image folder was moved away after training."""
    from benchmark.runs.pipeline import run

    images = tmp_path / "ct"
    shutil.copytree(saved_run[1], images)
    run(compose_config(tmp_path, "dataset=folder", f"dataset.path={images}", synthetic=False))
    (run_dir,) = (tmp_path / "results" / "runs").glob("*/mobilenetv2/*")
    images.rename(tmp_path / "ct-moved")
    return run_dir, images


@pytest.mark.parametrize("name", ["export", "explain"])
def test_a_run_whose_images_moved_gets_a_fix_the_command_takes(moved_folder_run, capsys, name):
    """dataset.path= is no option of export or explain: the fix is to move the images back or train again."""
    run_dir, images = moved_folder_run
    line = error_of(name, [f"run={run_dir}"], capsys)
    assert line.startswith(f"error: run {run_dir}'s images are no longer at dataset.path={images} "), line
    assert line.endswith("move them back there, or train the run again with dataset.path=<where they are "
                         "now>")
    assert not (run_dir / "exports").exists()


def test_a_run_whose_config_yaml_was_edited_to_a_bad_dedupe_is_not_told_its_images_moved(
    moved_folder_run, capsys
):
    """The images are back where the run's config.yaml says; its dataset.dedupe is what is wrong."""
    run_dir, images = moved_folder_run
    (images.parent / "ct-moved").rename(images)
    config = run_dir / "config.yaml"
    config.write_text(config.read_text().replace("dedupe: warn", "dedupe: delete"))
    line = error_of("explain", [f"run={run_dir}"], capsys)
    assert line == (f"error: run {run_dir}'s config.yaml: dataset.dedupe=delete is not one of warn | drop | "
                    "error: put back the value it was trained with, or train the run again")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("figure.colormap=notacmap", "error: figure.colormap=notacmap is not a matplotlib colormap: use e.g. "
                                     "figure.colormap=jet"),
        ("n_images=-3", "error: n_images=-3 must be a whole number of at least 1: e.g. n_images=8"),
        ("n_images=0", "error: n_images=0 must be a whole number of at least 1"),  # QA: silent, exit 0
        ("figure.alpha=2", "error: figure.alpha=2 must be an opacity from 0 to 1"),
        ("figure.columns=0", "error: figure.columns=0 must be a whole number of at least 1"),
    ],
)
def test_a_bad_explain_option_stops_before_the_data_is_read(saved_run, capsys, monkeypatch, option, message):
    """n_images=-3 was refused only after the dataset was loaded, a bad colormap was a traceback."""

    def no_loading(*args):
        raise AssertionError("the dataset was loaded before the options were checked")

    monkeypatch.setattr(explain, "load_test_split", no_loading)
    line = error_of("explain", [f"run={saved_run[0]}", option], capsys)
    assert line.startswith(message), line


@pytest.mark.parametrize("name", COMMANDS)
def test_a_run_whose_metrics_file_is_corrupt_is_not_complete(saved_run, tmp_path: Path, capsys, name):
    """As the sweep counts it (layout.is_complete): a metrics.json cut short is no finished run, refused in
    one line, not read into a traceback."""
    run_dir, data_root = saved_run
    copy = tmp_path / "results" / run_dir.relative_to(run_dir.parents[3])
    shutil.copytree(run_dir, copy)
    metrics = copy / "metrics.json"
    metrics.write_text(metrics.read_text()[:300])  # a full disk, a broken copy
    line = error_of(name, arguments(name, copy, data_root), capsys)
    assert line.startswith(f"error: run {copy} is not a complete run (its metrics.json is corrupt: "), line
    assert line.endswith("): train it again with the same options")


@pytest.mark.parametrize("name", COMMANDS)
def test_a_results_folder_given_as_the_run_names_a_run_in_it(saved_run, capsys, name):
    """QA: run=results (the folder of runs) said "not a complete run (no metrics.json): finish it first"."""
    run_dir, data_root = saved_run
    results = run_dir.parents[3]
    line = error_of(name, arguments(name, results, data_root), capsys)
    assert line == (f"error: run {results} is a folder of runs, not a run: pass one run directory, "
                    f"e.g. run={run_dir}"), line
    assert "finish it first" not in line


def test_a_bad_setting_is_refused_even_where_the_run_is_complete(saved_run):
    """QA: runtime.threads is not part of a run's identity, so a finished run was skipped and the bad value
    passed unnoticed (the same command on a new run made TensorFlow abort)."""
    run_dir, _ = saved_run
    result = run_cli([*tiny_overrides(run_dir.parents[4]), "runtime.threads=-3"])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "runtime.threads=-3 must be auto or a whole number of at least 1" in result.stderr
