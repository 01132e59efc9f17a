"""The leakage audit's figure: the closest cross-split pairs side by side, so a person can confirm them."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import BenchmarkError
from benchmark.figures.canvas import empty_panel, panel_grid, write_figure

KIND_ORDER = ("exact", "near", "sop_instance_uid", "name", "patient_id")
NAME_CHARS = 26  # what fits above a panel at the title's font size


def shorten(text: str, limit: int = NAME_CHARS) -> str:
    """The end of a long path (the file name and its nearest folders matter most)."""
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def closest_cross_split(pairs: pd.DataFrame, n_pairs: int) -> pd.DataFrame:
    """Pairs across splits, exact first, then near by distance, then the other kinds."""
    cross = pairs[pairs["split_a"] != pairs["split_b"]].copy()
    cross["order"] = [KIND_ORDER.index(k) if k in KIND_ORDER else len(KIND_ORDER) for k in cross["kind"]]
    cross = cross.sort_values(["order", "distance", "split_a", "file_a"], na_position="last", kind="stable")
    return cross.head(n_pairs)


def describe(kind: str, distance: object) -> str:
    if pd.isna(distance):
        return f"same {kind.replace('_', ' ')}"
    return f"{kind}, {int(distance)} bit{'s' if int(distance) != 1 else ''} apart"


def audit_figure(
    pairs: pd.DataFrame, load: Callable[[str], np.ndarray], path: Path, n_pairs: int = 8
) -> Path | None:
    """Up to `n_pairs` cross-split pairs, two panels per pair titled with split, file name and distance;
    None (and no file) when no pair crosses splits. An image `load` cannot read gets an empty panel."""
    shown = closest_cross_split(pairs, n_pairs) if len(pairs) else pairs
    if not len(shown):
        return None
    fig, axes = panel_grid(2 * len(shown), 4, 2.9, 3.2)
    for k, row in enumerate(shown.itertuples(index=False)):
        caption = f"pair {k + 1}: {describe(row.kind, row.distance)}"
        for ax, split, image_id in ((axes[2 * k], row.split_a, row.file_a),
                                    (axes[2 * k + 1], row.split_b, row.file_b)):
            title = f"{split}: {shorten(str(image_id))}\n{caption}"
            try:
                image = np.asarray(load(image_id))
            except (BenchmarkError, OSError, KeyError, ValueError) as error:
                empty_panel(ax, title, f"cannot load:\n{shorten(str(error), 40)}")
                continue
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    n_cross = int((pairs["split_a"] != pairs["split_b"]).sum())
    fig.suptitle(f"Leakage audit: the {len(shown)} closest of {n_cross} cross-split pairs "
                 "(left and right of each pair: the same image in two splits?)", fontsize=10)
    fig.tight_layout()
    return write_figure(fig, path)
