"""A patient-grouped folder run in which no split of the patients can give a class to test: every output
says the class is absent and its numbers undefined, none reads as a measured 0 or a value without an
interval."""

import json
import logging
import math
import re
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.runs.model_card import model_card
from benchmark.runs.pipeline import run

CLASSES = {"normal": 6, "pneumonia": 6, "tumor": 1}  # patients of 3 images each; one 'tumor' patient


def write_patients(root: Path) -> Path:
    """<root>/data/<class>/<patient>_<slice>.png (real PNGs) and <root>/groups.csv naming each patient."""
    rng = np.random.default_rng(0)
    rows, patient = [], 0
    for klass, n_patients in CLASSES.items():
        (root / "data" / klass).mkdir(parents=True)
        for _ in range(n_patients):
            for s in range(3):
                file = f"{klass}/p{patient:02d}_{s}.png"
                Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(root / "data" / file)
                rows.append(f"{file},P{patient:02d}")
            patient += 1
    (root / "groups.csv").write_text("file,group\n" + "\n".join(rows) + "\n")
    return root / "data"


def test_a_class_absent_from_test_is_named_and_undefined_everywhere(tiny_cfg, tmp_path, caplog):
    data = write_patients(tmp_path)
    with caplog.at_level(logging.INFO):
        groups = f"dataset.groups={tmp_path / 'groups.csv'}"
        metrics = run(tiny_cfg("dataset=folder", f"dataset.path={data}", groups, synthetic=False))
    assert "test has no images of class 'tumor' (too few groups" in caplog.text
    # the run's last line says what the card says (it printed "[nan, nan]" and "macro-AUROC nan")
    said = r"mobilenetv2: accuracy \d\.\d{4} \(no CI\), macro-AUROC undefined \(class 'tumor' has no test"
    assert re.search(said, caplog.text), caplog.text[-2000:]
    (run_dir,) = (tmp_path / "results" / "runs" / "data" / "mobilenetv2").iterdir()
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["absent_classes"] == metrics["absent_classes"] == ["tumor"]
    tumor = saved["per_class"]["tumor"]
    assert tumor["support"] == 0 and math.isnan(tumor["sensitivity"]) and math.isnan(tumor["recall"])
    assert math.isnan(saved["macro_f1"]) and math.isnan(saved["balanced_accuracy"])
    report = (run_dir / "classification_report.txt").read_text()
    macro = next(line for line in report.splitlines() if line.strip().startswith("macro avg"))
    assert macro.split()[2:5] == ["nan"] * 3 and "No test images of 'tumor'" in report
    card = (run_dir / "MODEL_CARD.md").read_text()
    assert "| balanced accuracy | undefined (class 'tumor' has no test images) |" in card
    assert "| macro-F1 | undefined (class 'tumor' has no test images) |" in card
    assert "has no test images) (no CI)" not in card  # undefined is not a value without an interval
    assert "A class has a single test patient: every resample of the test set holds it" in card  # why no CI
    assert "intervals are wide." not in card and "patients: few, so intervals are missing or wide." in card
    limits = card.split("## Known limits")[1]
    assert "Class 'tumor' has no test images" in limits and "Class 'tumor' has no validation images" in limits
    older = {key: value for key, value in saved.items() if key != "absent_classes"}  # before it was recorded
    again = model_card(older, json.loads((run_dir / "manifest.json").read_text()))
    assert "Class 'tumor' has no test images" in again and "| macro-F1 | undefined (class 'tumor'" in again
