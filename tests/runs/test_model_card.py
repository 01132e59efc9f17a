"""MODEL_CARD.md of a real run whose temperature stopped at its search bound: the card says it is no
estimate and that predict refuses it, for a run with the flag and for one made before the flag."""

import json

import pytest

from benchmark.runs.model_card import model_card


@pytest.fixture
def recorded(saved_run) -> tuple[dict, dict]:
    """The saved run's metrics.json and manifest.json, to edit and write a card from."""
    run_dir, _ = saved_run
    return (json.loads((run_dir / "metrics.json").read_text()),
            json.loads((run_dir / "manifest.json").read_text()))


@pytest.mark.parametrize("flagged", [True, None])  # None: a run made before the flag was recorded
def test_a_temperature_at_its_bound_is_said_to_be_no_estimate(recorded, flagged):
    metrics, manifest = recorded
    calibration = {**metrics["calibration"], "temperature": 20.0, "temperature_at_bound": flagged}
    metrics["calibration"] = {key: value for key, value in calibration.items() if value is not None}
    card = model_card(metrics, manifest)
    section = card.split("## Calibration")[1].split("##")[0]
    assert ("Temperature 20.00 fitted on validation, at the bound of its search [0.05, 20]: not an "
            "estimate; predict calibrated=true refuses it." in section)
    assert "Temperature scaling hit its search bound" in card.split("## Known limits")[1]


def test_a_fitted_temperature_is_stated_plainly(recorded):
    metrics, manifest = recorded
    metrics["calibration"] |= {"temperature": 1.7, "temperature_at_bound": False}
    card = model_card(metrics, manifest)
    assert "Temperature 1.70 fitted on validation: test ECE" in card
    assert "at the bound" not in card and "hit its search bound" not in card


def test_a_grouped_test_split_is_counted_in_patients(recorded):
    """QA: a card said "The test split has 34 images" of a split into 9 patients, the bootstrap's unit."""
    metrics, manifest = recorded
    limits = model_card(metrics | {"n_test": 34, "n_test_groups": 9, "split_by": "patient"}, manifest)
    assert "The test split has 34 images of 9 patients: intervals are wide." in limits
    many = model_card(metrics | {"n_test": 3400, "n_test_groups": 60, "split_by": "patient"}, manifest)
    assert "The test split has 3400 images of 60 patients" in many  # many slices, few patients: still wide


def test_a_small_validation_split_is_a_known_limit(recorded):
    """QA: 2 validation patients chose the epoch, the temperature, the thresholds and the search's trial,
    and nothing said so."""
    metrics, manifest = recorded
    grouped = {"split_sizes": {"train": 80, "val": 15, "test": 30}, "split_by": "patient",
               "split_groups": {"train": 12, "val": 2, "test": 5}}
    card = model_card(metrics | grouped, manifest)
    assert ("The validation split has 15 images of 2 patients: early stopping, the temperature, the "
            "operating thresholds and the choice of configuration or search trial rest on them") in card
    by_image = metrics | {"split_sizes": {"train": 80, "val": 9, "test": 30}, "split_groups": None}
    assert "The validation split has 9 images:" in model_card(by_image, manifest)
    enough = metrics | {"split_sizes": {"train": 80, "val": 15, "test": 30}, "split_groups": None}
    assert "The validation split has" not in model_card(enough, manifest)
