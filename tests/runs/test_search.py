"""The Optuna search chooses on validation only, in each metric's own direction; its settings and space
are checked before a study exists, and the space is part of the study's identity."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

from benchmark.errors import BenchmarkError
from benchmark.report.load import collect
from benchmark.report.searches import data_of, is_current
from benchmark.runs.search import data_in_name, forget_failure, study_name, summary, with_data
from benchmark.runs.search_space import VALIDATION_METRICS, check_search
from benchmark.runs.settings import check_sweep
from tests.conftest import compose_config, run_cli, tiny_overrides


def test_a_search_on_a_test_metric_stops_before_any_trial(tmp_path: Path):
    pytest.importorskip("optuna")
    result = run_cli(["hparams_search=head", "hparams_search.metric=macro_auroc",
                      f"results_dir={tmp_path / 'results'}", f"data_dir={tmp_path / 'data'}"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: hparams_search.metric=macro_auroc is not a validation metric" in result.stderr
    assert not (tmp_path / "results" / "runs").exists()


@pytest.mark.parametrize("metric", list(VALIDATION_METRICS))
def test_the_best_trial_follows_the_metrics_direction(metric: str):
    optuna = pytest.importorskip("optuna")
    study = optuna.create_study(direction=VALIDATION_METRICS[metric])
    for value in (0.7, 0.2, 0.9):
        study.add_trial(optuna.trial.create_trial(value=value, params={}, distributions={}))
    chosen = summary(study, metric, 3)
    assert chosen["direction"] == VALIDATION_METRICS[metric]
    assert chosen["best"]["value"] == (0.9 if VALIDATION_METRICS[metric] == "maximize" else 0.2)


def test_another_metric_is_another_study(tmp_path: Path):
    """Optuna loads a stored study with its stored direction: the metric must be part of the name."""
    names = {study_name(compose_config(tmp_path, "hparams_search=head", f"hparams_search.metric={metric}"))
             for metric in VALIDATION_METRICS}
    assert len(names) == len(VALIDATION_METRICS)


@pytest.mark.parametrize(("override", "message"), [
    ("hparams_search.n_trials=abc", "hparams_search.n_trials='abc' must be a whole number of at least 1"),
    ("hparams_search.n_trials=0", "hparams_search.n_trials=0 must be a whole number of at least 1"),
])
def test_bad_search_settings_stop_before_the_study_exists(tmp_path: Path, override: str, message: str):
    """Not a TypeError traceback, nor "no trial finished" over an empty study .db."""
    pytest.importorskip("optuna")
    result = run_cli(["hparams_search=head", override, f"results_dir={tmp_path / 'results'}",
                      f"data_dir={tmp_path / 'data'}"])
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"error: {message}" in result.stderr
    assert not (tmp_path / "results" / "search").exists()


@pytest.mark.parametrize(("overrides", "message"), [
    (["hparams_search.n_trials=-2"], "hparams_search.n_trials=-2 must be a whole number of at least 1"),
    (["hparams_search.n_trials=2.0"], "hparams_search.n_trials=2.0 must be a whole number of at least 1"),
    (["hparams_search.sampler_seed=x"], "hparams_search.sampler_seed='x' must be a whole number from 0"),
    (["hparams_search.space=[{key:head.dropout,low:0.5,high:0.1}]"],
     "hparams_search.space item head.dropout has low=0.5 >= high=0.1: give low < high"),
    (["hparams_search.space=[{key:train.lr,low:0,high:0.1,log:true}]"],
     "hparams_search.space item train.lr has log: true with low=0: log needs low > 0"),
    (["hparams_search.space=[{key:head.units,choices:[]}]"],
     "hparams_search.space item head.units has choices=[]: give a non-empty list"),
    (["hparams_search.space=[{key:head.units,low:abc,high:3}]"],
     "hparams_search.space item head.units has low='abc', high=3: give numbers low < high, or choices"),
    (["hparams_search.space=[{choices:[1,2]}]"], "hparams_search.space item {'choices': [1, 2]} needs a key"),
    (["hparams_search.space=[{key:head.units,choice:[64]}]"],
     "hparams_search.space item head.units has choice, which an item does not take"),
    (["hparams_search.space=[]"], "hparams_search.space=[] must be a non-empty list of items"),
    (["hparams_search.space=[{key:head.units,choices:[64]},{key:head.units,choices:[128]}]"],
     "hparams_search.space searches head.units twice"),
    # values a trial would get that the key does not take (the trial would stop the search, left RUNNING)
    (["hparams_search.space=[{key:head.dropout,choices:[0.1,1.5]}]"],
     "hparams_search.space item head.dropout offers 1.5, but head.dropout must be a fraction"),
    (["hparams_search.space=[{key:head.units,low:64,high:512}]"],
     "must be a whole number of at least 1: give choices, e.g. {key: head.units, choices: [64, 512]}"),
    (["hparams_search.space=[{key:train.optimizer,low:0.1,high:0.2}]"],
     "ranges over fractions from 0.1 to 0.2, but train.optimizer must be one of adam | sgd"),
    (["hparams_search.space=[{key:train.patience,low:1,high:3}]"],
     "must be a whole number of at least 0: give choices, e.g. {key: train.patience, choices: [1, 3]}"),
])
def test_bad_search_settings_are_refused_naming_the_key_and_fix(tmp_path: Path, overrides, message: str):
    with pytest.raises(BenchmarkError, match=re.escape(message)):
        check_search(compose_config(tmp_path, "hparams_search=head", *overrides))


@pytest.mark.parametrize(("overrides", "message"), [
    (["hparams_search=finetune"],
     "hparams_search=finetune searches train.unfreeze, which train=frozen does not have: add train=finetune"),
    (["hparams_search=head", "hparams_search.space=[{key:head.unitz,choices:[64,128]}]"],
     "searches head.unitz, which this run's config does not have: did you mean head.units?"),
    (["hparams_search=head", "hparams_search.space=[{key:head,choices:[1]}]"],
     "hparams_search=head searches head, a group of settings: search one of its keys, e.g. head.units"),
    (["hparams_search=head", "hparams_search.space=[{key:explain.n_images,choices:[1,2]}]"],
     "hparams_search=head searches explain.n_images, which does not change what is trained"),
    (["hparams_search=head", "hparams_search.space=[{key:train.save_model,choices:[true,false]}]"],
     "hparams_search=head searches train.save_model, which does not change what is trained"),
    (["hparams_search=head", "hparams_search.space=[{key:augment.zoom,low:0.0,high:0.2}]"],
     "hparams_search=head searches augment.zoom, which train=frozen does not use"),
    (["hparams_search=head", "train=knn"], "searches head.units, which train=knn does not read"),
    (["hparams_search=head", "train=linear", "hparams_search.space=[{key:train.lr,low:0.001,high:0.1}]"],
     "hparams_search=head searches train.lr, which train=linear does not read"),
])
def test_a_key_the_run_does_not_have_or_read_is_refused(tmp_path: Path, overrides, message: str):
    """Otherwise every trial is the same training under another name."""
    with pytest.raises(BenchmarkError, match=re.escape(message)):
        check_search(compose_config(tmp_path, *overrides))


@pytest.mark.parametrize("overrides", [
    ["hparams_search=head"],
    ["hparams_search=finetune", "train=finetune"],
    ["hparams_search=head", "train=knn", "hparams_search.space=[{key:train.k,choices:[5,11]}]"],
    ["hparams_search=head", "train=finetune", "hparams_search.space=[{key:augment.zoom,low:0.0,high:0.2}]"],
])
def test_the_shipped_spaces_and_valid_ones_pass(tmp_path: Path, overrides):
    check_search(compose_config(tmp_path, *overrides))


def test_another_space_is_another_study(tmp_path: Path):
    """Optuna refuses a stored parameter's choices changing ("dynamic value space"), and a study keeps a
    trial left RUNNING by a bad choice: another space must be another study, the same space the same one."""
    def name(*space: str) -> str:
        return study_name(compose_config(tmp_path, "hparams_search=head", *space))

    wider = "hparams_search.space=[{key:head.units,choices:[64,128,256,512,1024]}]"
    assert name() == name()
    assert len({name(), name(wider), name("hparams_search.space=[{key:head.units,choices:[64,128]}]"),
                name("hparams_search.space=[{key:head.dropout,low:0.0,high:0.5}]")}) == 4


def held_study(tmp_path: Path, *overrides: str) -> FileLock:
    """The lock of the study these overrides search, as another process running it would hold it."""
    name = study_name(compose_config(tmp_path, "hparams_search=head", *overrides))
    folder = tmp_path / "results" / "search"
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(folder / f".{name}.lock")


def test_a_single_search_whose_study_is_held_is_one_line_and_exit_2(tmp_path: Path):
    pytest.importorskip("optuna")
    with held_study(tmp_path):
        result = run_cli(["hparams_search=head", *tiny_overrides(tmp_path)])
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is being run by another process" in errors[0]


def test_a_search_multirun_records_a_refused_cell_and_goes_on(tmp_path: Path):
    """Seed 0's study is held by another process: that cell is recorded as failed, as an ordinary cell's
    failure is, and seed 1's study still runs; the exit status is the ordinary sweep's. The record goes
    once that study has run."""
    pytest.importorskip("optuna")
    search = ["hparams_search=head", "hparams_search.n_trials=1"]
    with held_study(tmp_path, *search, "seed=0"):
        result = run_cli(["--multirun", *search, "seed=0,1", *tiny_overrides(tmp_path)], timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 1, log[-3000:]  # a failed cell
    failed = [line for line in log.splitlines() if "FAILED: study" in line]
    assert len(failed) == 1 and "cell mobilenetv2 seed=0 FAILED" in failed[0], log[-3000:]
    assert "is being run by another process" in failed[0]
    assert re.search(r"sweep finished: 1/2 cells complete in \d+ s; FAILED: mobilenetv2 seed=0", log)
    (ran,) = (tmp_path / "results" / "search").glob("*-seed1-*.json")
    assert json.loads(ran.read_text())["n_complete"] == 1
    (record,) = (tmp_path / "results" / "runs" / "synthetic" / "mobilenetv2").glob("seed0-*/failed.json")
    assert "is being run by another process" in json.loads(record.read_text())["error"]
    assert "is being run by another process" in (tmp_path / "results" / "leaderboard.md").read_text()
    again = run_cli([*search, *tiny_overrides(tmp_path)])  # the study run once it is free: no longer failed
    assert again.returncode == 0, again.stderr[-3000:]
    assert not record.parent.exists()


def test_a_multirun_stops_before_its_first_cell_only_on_a_refusal_of_every_cell(tmp_path: Path):
    """hparams_search=finetune refuses a train=frozen cell only: that cell fails at its turn, the rest run."""
    frozen = compose_config(tmp_path, "hparams_search=finetune")
    finetune = compose_config(tmp_path, "hparams_search=finetune", "train=finetune")
    check_sweep([frozen, finetune])
    check_sweep([frozen, compose_config(tmp_path)])  # a cell without a search
    with pytest.raises(BenchmarkError, match="which train=frozen does not have: add train=finetune"):
        check_sweep([frozen, frozen])


def test_search_settings_wrong_for_every_cell_stop_the_multirun_before_any_cell(tmp_path: Path):
    pytest.importorskip("optuna")
    result = run_cli(["--multirun", "hparams_search=head", "hparams_search.n_trials=0",
                      "backbone=mobilenetv2,resnet50", *tiny_overrides(tmp_path)])
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: hparams_search.n_trials=0 must be a whole number of at least 1: "
                      "e.g. hparams_search.n_trials=20"], result.stderr[-2000:]
    assert "cell 1/2" not in result.stdout + result.stderr
    assert not (tmp_path / "results" / "search").exists() and not (tmp_path / "data").exists()


def test_debug_shows_the_traceback_of_search_settings_refused_for_every_cell(tmp_path: Path):
    """debug=True as typed, not only the literal debug=true: the sweeper knows the config's debug."""
    result = run_cli(["--multirun", "hparams_search=head", "hparams_search.n_trials=0",
                      "backbone=mobilenetv2,resnet50", "debug=True", *tiny_overrides(tmp_path)])
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" in result.stderr, result.stderr[-2000:]
    assert "BenchmarkError: hparams_search.n_trials=0 must be a whole number" in result.stderr
    assert "cell 1/2" not in result.stdout + result.stderr


def failed_search_cell(results: Path, study: str) -> Path:
    """The failed.json a sweep writes for a search cell (n_trials=2) refused its study's lock."""
    run_dir = results / "runs" / "synthetic" / "mobilenetv2" / "seed0-0123abcd"
    run_dir.mkdir(parents=True)
    (run_dir / "failed.json").write_text(json.dumps({
        "backbone": "mobilenetv2", "dataset": "synthetic", "seed": 0, "config_hash": "0123abcd",
        "error_type": "BenchmarkError", "error": f"study {study} is being run by another process",
        "study": study, "n_trials": 2}))
    return run_dir


@pytest.mark.parametrize(("result", "listed"), [
    ({"best": {"value": 0.9}, "finished": True, "target_trials": 2}, False),
    ({"best": None, "finished": True, "target_trials": 2}, True),
    ({"best": {"value": 0.9}, "finished": False, "target_trials": 2}, True),  # a later trial failed
    ({"best": {"value": 0.9}}, True),  # written before `finished` was: cannot tell
    ({"best": {"value": 0.9}, "finished": True, "target_trials": 1}, True),  # fewer than the cell asked
    ({"best": {"value": 0.9}, "finished": True, "target_trials": 2, "study": "head-t"}, True),  # another
])
def test_a_refused_search_cell_whose_study_finished_is_not_listed_as_failed(tmp_path: Path, result, listed):
    """The process that finished the study removes the record (forget_failure), but the refused process
    may write it just after: the report trusts the study's result, a study finished with a best trial.
    Both follow one rule (search.made_good): the report lists exactly the failures the study keeps."""
    results = tmp_path / "results"
    run_dir = failed_search_cell(results, "head-s")
    (results / "search").mkdir()
    result = {"study": "head-s", **result}
    (results / "search" / "head-s.json").write_text(json.dumps(result))
    assert [failure.backbone for failure in collect(results).failed] == (["mobilenetv2"] if listed else [])
    assert not collect(results).skipped
    forget_failure(run_dir, result)
    assert (run_dir / "failed.json").exists() == listed


def test_a_study_names_its_data_version_where_the_report_reads_it():
    """The name's data suffix is made (with_data) and read back (data_in_name) in one place; a study named
    before it existed stops counting once a successor with a data version does."""
    name = with_data("head-val_loss-synthetic-mobilenetv2-frozen-seed0-0123abcd-space0a1b2c", "f" * 16)
    assert data_in_name(name) == (name.removesuffix("-dataffffffff"), "ffffffff")
    assert data_in_name("head-s") == ("head-s", None) and data_of({"study": name}) == "ffffffff"
    old = {"study": "head-s", "best": {"run_dir": "/elsewhere/runs/synthetic/mobilenetv2/seed0-1"}}
    current = {("synthetic", "mobilenetv2", "seed0-1"): "f" * 16}
    assert is_current(old, current, {"head-s", "head-s-other"})
    assert not is_current(old, current, {"head-s", with_data("head-s", "e" * 16)})


def test_a_study_whose_trial_failed_after_good_ones_does_not_hide_the_cells_failure(tmp_path: Path):
    """Trials 1-3 of 4 complete, trial 4 raises a BenchmarkError (left RUNNING, the cell recorded failed):
    the summary written after trial 3 has a best trial, but the study is not finished."""
    optuna = pytest.importorskip("optuna")
    results = tmp_path / "results"
    (results / "search").mkdir(parents=True)
    study = optuna.create_study(study_name="head-s", direction="maximize")
    for value in (0.7, 0.8, 0.6):  # the cell asked for 2 trials: this study's 4 are more than enough
        study.add_trial(optuna.trial.create_trial(value=value, params={}, distributions={}))
    failing = study.ask()

    def written() -> dict:
        result = summary(study, "val_macro_auroc", 4, "f" * 16)
        (results / "search" / "head-s.json").write_text(json.dumps(result))
        return result

    assert written()["best"]["value"] == 0.8 and not written()["finished"]
    failed_search_cell(results, "head-s")
    assert [failure.backbone for failure in collect(results).failed] == ["mobilenetv2"]
    study.tell(failing, 0.5)  # the study run again to its end: the failure is made good
    assert written()["finished"] and written()["target_trials"] == 4
    assert collect(results).failed == []


def test_a_refused_search_cell_without_a_study_result_is_listed_as_failed(tmp_path: Path):
    failed_search_cell(tmp_path / "results", "head-s")
    assert len(collect(tmp_path / "results").failed) == 1


def test_a_search_sweep_whose_every_cell_is_refused_stops_before_the_data(tmp_path: Path):
    """The frozen cell's search is refused by check_search, both cells' batch size by check_settings: no
    cell can run its study, so the sweep stops before the first, in one line (it used to record a failed
    cell each and exit 0); nothing is loaded or written."""
    pytest.importorskip("optuna")
    result = run_cli(["--multirun", "hparams_search=finetune", "train=frozen,finetune", "train.batch_size=0",
                      *tiny_overrides(tmp_path)])
    log = result.stdout + result.stderr
    assert result.returncode == 2, log[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: train.batch_size=0 must be a whole number of at least 1: e.g. "
                      "train.batch_size=32"]
    assert not (tmp_path / "results" / "runs").exists() and not (tmp_path / "data").exists()


def test_a_search_of_a_folder_whose_images_changed_is_another_study(tmp_path: Path):
    """Same folder, images edited in place: its trials' values are not comparable with the old data's, so
    the study is not resumed with the old best (the data's version is part of its name)."""
    pytest.importorskip("optuna")
    from PIL import Image

    rng = np.random.default_rng(0)
    data = tmp_path / "lungs"
    for klass in ("a", "b"):
        (data / klass).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).save(data / klass / f"{i}.png")
    args = ["dataset=folder", f"dataset.path={data}", "hparams_search=head", "hparams_search.n_trials=1",
            *tiny_overrides(tmp_path, synthetic=False)]
    first = run_cli(args)
    assert first.returncode == 0, first.stderr[-3000:]
    Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).save(data / "a" / "0.png")
    again = run_cli(args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Using an existing study" not in again.stdout + again.stderr
    studies = [json.loads(p.read_text()) for p in (tmp_path / "results" / "search").glob("*.json")]
    assert len(studies) == 2 and [s["n_complete"] for s in studies] == [1, 1]
    assert len({s["study"].rsplit("-data", 1)[0] for s in studies}) == 1  # only the data's version differs
    assert all(s["finished"] and s["target_trials"] == 1 for s in studies)
    old, new = sorted(studies, key=lambda s: s["study"] in again.stdout + again.stderr)
    assert old["data_fingerprint"] != new["data_fingerprint"]
    assert all(s["study"].endswith(f"-data{s['data_fingerprint'][:8]}") for s in studies)
    report = run_cli([f"results_dir={tmp_path / 'results'}"], module="benchmark.report")
    assert report.returncode == 0, report.stderr[-3000:]
    searches = (tmp_path / "results" / "leaderboard.md").read_text().split("## Hyperparameter searches\n")[1]
    searches = searches.split("\n## ", 1)[0]
    assert f"| {new['study']} | 1 / 1 |" in searches and f"| {old['study']} |" not in searches
    assert f"Not listed, on another version of the data (not current): `{old['study']}`." in searches
