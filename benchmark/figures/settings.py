"""Figures that compare settings of the same backbone (drawn only when the runs hold more than one):
training regimes (kNN / linear probe / frozen head / fine-tuning) and input sizes. The leaderboard's
"Regimes" and "Input sizes" tables hold the same numbers."""

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter
from omegaconf import DictConfig

from benchmark.figures.canvas import colours, plt, write_figure
from benchmark.metrics.evaluate import Settings
from benchmark.metrics.table import metric
from benchmark.report.rows import Row, error_bars, mean_of


def single_models(rows: list[Row]) -> list[Row]:
    return [row for row in rows if not row.is_ensemble]


def varies(rows: list[Row], setting: Callable[[Row], object]) -> bool:
    return len({setting(row) for row in single_models(rows)}) > 1


def several_regimes(rows: list[Row]) -> bool:
    return varies(rows, lambda row: row.regime)


def several_sizes(rows: list[Row]) -> bool:
    return varies(rows, lambda row: row.image_size)


def weights_shown(rows: list[Row]) -> Callable[[Row], str]:
    """A row's weights for a label, or nothing when every row has the same (the table says which)."""
    if len({row.weights for row in rows}) == 1:
        return lambda row: ""
    return lambda row: f", {row.weights}"


def regime_order(rows: list[Row]) -> list[str]:
    """Regimes by training cost (the cheapest first), as the Regimes table orders its columns."""
    cost: dict[str, float] = {}
    for row in rows:
        cost[row.regime] = min(cost.get(row.regime, np.inf), np.nan_to_num(mean_of(row, "training_s"), nan=0))
    return sorted(cost, key=lambda regime: (cost[regime], regime))


def regime_chart(rows: list[Row], dataset: str, cfg: DictConfig, settings: Settings, path: Path) -> None:
    """Per backbone (and input size, weights), the primary metric under each regime with its interval."""
    rows = single_models(rows)
    primary = metric(cfg.primary_metric)
    regimes = regime_order(rows)
    groups: dict[str, dict[str, Row]] = defaultdict(dict)
    weights = weights_shown(rows)
    for row in rows:
        groups[f"{row.backbone}, {row.image_size} px{weights(row)}"][row.regime] = row
    names = sorted(groups)
    palette = colours(regimes)
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.45 * len(names) * len(regimes)))
    step = 0.8 / len(regimes)
    for k, regime in enumerate(regimes):
        members = [(i, groups[name][regime]) for i, name in enumerate(names) if regime in groups[name]]
        means, errors = error_bars([row for _, row in members], primary.key)
        positions = np.array([i for i, _ in members]) + (k - (len(regimes) - 1) / 2) * step
        bars = np.where(np.isfinite(errors), errors, 0)
        ax.errorbar(means, positions, xerr=bars, fmt="o", ms=7, capsize=3, color=palette[regime],
                    label=regime)
    ax.set_yticks(np.arange(len(names)), names)
    ax.invert_yaxis()
    if primary.bounded:
        ax.set_xlim(0, 1.02)
    direction = "higher" if primary.higher_is_better else "lower"
    ax.set_xlabel(f"test {primary.name} ({direction} is better), mean over seeds")
    ax.set_title(f"{dataset}: {primary.name} per training regime, {settings.ci_level:.0%} CI\n"
                 f"weights: {rows[0].weights if not weights(rows[0]) else 'as labelled'}")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(title="regime (cheapest first)", loc="best", fontsize="small")
    write_figure(fig, path, cfg.figures.dpi)


def size_chart(rows: list[Row], dataset: str, cfg: DictConfig, settings: Settings, path: Path) -> None:
    """Left: the primary metric against input size, one line per backbone (colour) and regime (marker),
    with intervals, nudged sideways so they do not hide each other. Right: each backbone's forward pass
    cost per image at each size (from the recorded throughput; the same for every regime)."""
    rows = single_models(rows)
    primary = metric(cfg.primary_metric)
    series: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    weights = weights_shown(rows)
    for row in rows:
        series[(row.backbone, row.regime, weights(row))].append(row)
    backbones = sorted({row.backbone for row in rows})
    palette = colours(backbones)
    regimes = regime_order(rows)
    sizes = sorted({row.image_size for row in rows})
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), layout="constrained")
    for k, ((backbone, regime, weights_label), members) in enumerate(sorted(series.items())):
        members.sort(key=lambda row: row.image_size)
        nudge = 2 ** (0.02 * (k - (len(series) - 1) / 2))  # a few per cent along the log axis
        x = np.array([row.image_size for row in members], float) * nudge
        means, errors = error_bars(members, primary.key)
        marker = MARKERS[regimes.index(regime) % len(MARKERS)]
        left.errorbar(x, means, yerr=np.where(np.isfinite(errors), errors, 0), fmt=marker + "-", capsize=3,
                      color=palette[backbone], label=f"{backbone}, {regime}{weights_label}")
    for backbone in backbones:
        cost = {size: np.nanmean([1000.0 / mean_of(row, "throughput_ips") for row in rows
                                  if row.backbone == backbone and row.image_size == size] or [np.nan])
                for size in sizes}
        measured = [size for size in sizes if np.isfinite(cost[size])]
        right.plot(measured, [cost[size] for size in measured], "o-", color=palette[backbone], label=backbone)
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(size) for size in sizes])
        ax.minorticks_off()
        ax.set_xlabel("input size (px, square)")
        ax.grid(alpha=0.3)
    direction = "higher" if primary.higher_is_better else "lower"
    left.set(ylabel=f"test {primary.name} ({direction} is better)",
             title=f"{primary.name} vs input size (mean over seeds, {settings.ci_level:.0%} CI)")
    spread = [c for line in right.get_lines() for c in line.get_ydata()]
    if spread and max(spread) > 10 * min(spread):  # orders of magnitude apart (VGG19 vs MobileNetV2)
        right.set_yscale("log")
        right.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        right.yaxis.set_major_formatter(ScalarFormatter())
        right.yaxis.set_minor_formatter(NullFormatter())
    right.set(ylabel="ms per image (forward pass, batched)",
              title="extraction cost vs input size")
    left.legend(fontsize="small", loc="upper left", bbox_to_anchor=(0, -0.14), ncol=2)  # below the lines
    right.legend(fontsize="small", loc="best")
    common = f" (weights: {rows[0].weights})" if not weights(rows[0]) else ""
    fig.suptitle(f"{dataset}: input sizes{common}")
    write_figure(fig, path, cfg.figures.dpi)


MARKERS = "osD^v"  # one per regime, cheapest first


# name -> (whether the runs hold the comparison, draw, caption)
SETTING_FIGURES: dict[str, tuple[Callable[[list[Row]], bool], Callable, str]] = {
    "regimes": (several_regimes, regime_chart, "metric per training regime and backbone, with CIs"),
    "input_sizes": (several_sizes, size_chart, "metric and extraction cost vs input size"),
}
