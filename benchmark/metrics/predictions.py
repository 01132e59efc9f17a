"""The one predictions table: written by runs, the ensemble and `predict`, read by everything else.

Columns: file, true_label (absent for unlabelled images in `predict`), predicted_label, confidence,
prob_<class> for every class, entropy.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.metrics.scores import predictive_entropy

TEXT_COLUMNS = {"file": str, "true_label": str, "predicted_label": str}


def probability_column(class_name: str) -> str:
    return f"prob_{class_name}"


def predictions_frame(
    files: list[str] | np.ndarray, probabilities: np.ndarray, class_names: list[str],
    labels: np.ndarray | None = None,
) -> pd.DataFrame:
    """The table for these images; `labels` (class indices) adds the true class."""
    names = np.asarray(class_names)
    table = pd.DataFrame({"file": [str(f) for f in files]})
    if labels is not None:
        table["true_label"] = names[labels]
    table["predicted_label"] = names[probabilities.argmax(axis=1)]
    table["confidence"] = probabilities.max(axis=1)
    for k, name in enumerate(class_names):
        table[probability_column(name)] = probabilities[:, k]
    table["entropy"] = predictive_entropy(probabilities)
    return table


def read_predictions(path: Path) -> pd.DataFrame:
    """The table back, with file and class names kept as text (class folders '00', 'NA' stay so)."""
    return pd.read_csv(path, dtype=TEXT_COLUMNS, keep_default_na=False)


def probabilities_of(table: pd.DataFrame, class_names: list[str]) -> np.ndarray:
    return table[[probability_column(name) for name in class_names]].to_numpy(dtype=float)


def labels_of(table: pd.DataFrame, class_names: list[str]) -> np.ndarray:
    """True class indices; a label outside `class_names` raises ValueError."""
    index = {name: k for k, name in enumerate(class_names)}
    mapped = table["true_label"].astype(str).map(index)
    if mapped.isna().any():
        raise ValueError("true labels outside the class list")
    return mapped.to_numpy(dtype=np.int64)
