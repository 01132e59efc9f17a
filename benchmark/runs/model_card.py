"""MODEL_CARD.md of a run: what a reader needs before trusting the model, in the spirit of the CLAIM
and TRIPOD+AI checklists. Written from the run's own metrics.json and manifest.json, nothing else, so
the card cannot say more than the run measured."""

import math

from backbones.registry import get
from benchmark.data.audit import LEAK_KINDS
from benchmark.data.groups import plural
from benchmark.metrics.calibration import bound_range
from benchmark.metrics.estimands import MIN_CASES, SINGLE_UNIT
from benchmark.metrics.table import BY_KEY

HEADLINE = (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"),
            ("macro_f1", "macro-F1"), ("macro_auroc", "macro-AUROC"))


def number(value: object, digits: int = 3) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        return "—"
    return f"{value:.{digits}f}"


def is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def rate(value: object) -> str:
    """A test rate; NaN when test has no case to count (no images of the class: no sensitivity)."""
    return "undefined" if is_nan(value) else number(value)


def classes_phrase(names: list[str], start: str = "class") -> str:
    """`class 'gamma' has` / `classes 'a', 'b' have` (`start="Class"` to open a sentence)."""
    return f"{start} {names[0]!r} has" if len(names) == 1 else f"{start}es {', '.join(map(repr, names))} have"


def absent_from(metrics: dict, manifest: dict, split: str) -> list[str]:
    """Classes with no images in a split: metrics.json's `absent_classes` for test (older runs lack it),
    else the manifest's counts per split."""
    if split == "test" and isinstance(metrics.get("absent_classes"), list):
        return list(metrics["absent_classes"])
    counts = ((manifest.get("dataset") or {}).get("class_counts") or {}).get(split)
    if not counts:  # a split the run did not have (data that is only scored has no train or val)
        return []
    return [name for name in metrics["classes"] if counts.get(name, 0) == 0]


def undefined(metrics: dict, manifest: dict, key: str) -> str:
    """Why a metric is NaN, when the run says: a mean over classes needs every class in test."""
    absent = absent_from(metrics, manifest, "test")
    if absent and key in BY_KEY and BY_KEY[key].over_classes:
        return f"undefined ({classes_phrase(absent)} no test images)"
    return "undefined"


def with_interval(metrics: dict, key: str, digits: int = 3, manifest: dict | None = None) -> str:
    """`value [low, high]` of a one-run metric (metrics.json's `<key>_ci_low/high`), `value (no CI)`
    without an interval, `undefined (why)` for a NaN value, `—` when not recorded."""
    if is_nan(metrics.get(key)):  # not "— (no CI)": that reads as a value without an interval
        return undefined(metrics, manifest or {}, key)
    low, high = number(metrics.get(f"{key}_ci_low"), digits), number(metrics.get(f"{key}_ci_high"), digits)
    interval = f" [{low}, {high}]" if "—" not in (low, high) else " (no CI)"
    value = number(metrics.get(key), digits)
    return value if value == "—" else value + interval


def absent_limits(metrics: dict, manifest: dict) -> list[str]:
    """A class missing from a split, and what that leaves unmeasured."""
    found = []
    for split, unmeasured in (
        ("test", ", so the test metrics say nothing about {them}: {their} sensitivity and F1, and every "
                 "mean over classes (balanced accuracy, macro-F1, macro-AUROC), are undefined."),
        ("val", ": early stopping, temperature scaling and the operating-point thresholds were chosen "
                "without {them}."),
        ("train", ": the model never learned {them}."),
    ):
        if absent := absent_from(metrics, manifest, split):
            them, their = ("it", "its") if len(absent) == 1 else ("them", "their")
            split_name = {"val": "validation", "train": "training"}.get(split, split)
            found.append(f"{classes_phrase(absent, 'Class')} no {split_name} images"
                         + unmeasured.format(them=them, their=their))
    return found


def few_validation_cases(metrics: dict) -> str | None:
    """The validation split in a sentence where it has fewer than MIN_CASES cases (patients where the split
    has groups): everything chosen on it (early stopping, the temperature, the thresholds, a
    configuration, a search's trials) then rests on a handful of them. None otherwise."""
    images = (metrics.get("split_sizes") or {}).get("val")
    groups = (metrics.get("split_groups") or {}).get("val")
    if images is None or (groups or images) >= MIN_CASES:
        return None
    unit = metrics.get("split_by") or "group"
    of = f"{images} images of {groups} {plural(unit)}" if groups else f"{images} images"
    return (f"The validation split has {of}: early stopping, the temperature, the operating thresholds and "
            "the choice of configuration or search trial rest on them, so they are rough.")


def limits(metrics: dict, manifest: dict) -> list[str]:
    """What the numbers cannot tell, stated plainly."""
    found = []
    if metrics.get("synthetic_data"):
        found.append("The data is the project's synthetic CT-like images: the numbers say nothing about "
                     "clinical performance.")
    if str(metrics.get("weights_used", "")).startswith("random"):
        found.append(f"The backbone was not ImageNet-pretrained ({metrics['weights_used']}).")
    if metrics.get("split_by") == "image":
        found.append("Splits were made by image, not by patient: images of one patient may sit in train "
                     "and test, which inflates test metrics.")
    if shared := metrics.get("groups_in_several_splits"):
        found.append(f"{shared} {plural(metrics.get('split_by') or 'group')} sit in more than one split "
                     "(dataset.group_overlap=warn), which inflates test metrics.")
    found += absent_limits(metrics, manifest)
    if few := few_validation_cases(metrics):
        found.append(few)
    single = {SINGLE_UNIT.format(unit=unit): unit for unit in ("image", "group")}
    if units := {single[v] for key, v in metrics.items() if key.endswith("_ci_method") and v in single}:
        unit = "image" if "image" in units else metrics.get("split_by") or "group"
        found.append(f"A class has a single test {unit}: every resample of the test set holds it, so no "
                     "interval could show its variability; metrics without one say `(no CI)`.")
    groups = metrics.get("n_test_groups")  # the bootstrap's unit when set: a patient's slices are one case
    if (groups or metrics.get("n_test") or 0) < 100:
        of_groups = f" of {groups} {plural(metrics.get('split_by') or 'group')}" if groups else ""
        found.append(f"The test split has {metrics.get('n_test')} images{of_groups}: "
                     + ("few, so intervals are missing or wide." if units else "intervals are wide."))
    found_kinds = metrics.get("cross_split_duplicates") or {}  # older runs counted the hints in here too
    duplicates = sum(found_kinds.get(kind, 0) for kind in LEAK_KINDS)
    if duplicates:
        found.append(f"{duplicates} exact, near or same-instance duplicate pair(s) cross the splits "
                     "(audit.csv).")
    hints = sum((metrics.get("cross_split_hints") or {}).values())
    if hints:
        found.append(f"{hints} file name or DICOM PatientID match(es) cross the splits: check them in "
                     "audit.csv (different images may share a name).")
    if bound_range(metrics.get("calibration")):
        found.append("Temperature scaling hit its search bound: validation predictions carry little signal.")
    found.append("No external validation was part of the run itself: `python -m benchmark.evaluate` scores "
                 "other data into `external/<site>/` and the leaderboard's External validation table.")
    return found


def bound_phrase(calibration: dict) -> str:
    """After the temperature: a fit at its search bound is the search's limit, which predict refuses to
    apply, so the card must not read as if it were a fitted value to use."""
    if not (bounds := bound_range(calibration)):
        return ":"
    low, high = bounds
    return (f", at the bound of its search [{low:g}, {high:g}]: not an estimate; predict calibrated=true "
            "refuses it. Applied anyway,")


def model_card(metrics: dict, manifest: dict) -> str:
    dataset = manifest.get("dataset", {})
    calibration = metrics.get("calibration") or {}
    spec = get(str(metrics["backbone"]))
    counts = dataset.get("class_counts") or {}
    count_lines = [
        f"| {split} | " + " | ".join(str(counts[split].get(c, 0)) for c in metrics["classes"]) + " |"
        for split in counts
    ]
    lines = [
        f"# Model card: {metrics['backbone']} on {metrics['dataset']} (seed {metrics['seed']})",
        "",
        "## Intended use",
        "Research only: benchmarking transfer learning. Not a medical device; not for diagnosis, triage or "
        "any decision about a patient.",
        "",
        "## Data",
        f"- source: `{metrics['dataset']}`" + (" (synthetic)" if metrics.get("synthetic_data") else "")
        + f", fingerprint `{metrics.get('dataset_fingerprint')}`",
        f"- classes: {', '.join(metrics['classes'])}",
        f"- split by: {metrics.get('split_by')}"
        + (f" (groups per split: {metrics.get('split_groups')})" if metrics.get("split_groups") else ""),
        f"- unreadable files skipped: {metrics.get('skipped_images', 0)}",
        "",
        "| split | " + " | ".join(metrics["classes"]) + " |",
        "|---|" + "---|" * len(metrics["classes"]),
        *count_lines,
        "",
        "## Model",
        f"- backbone: {metrics['backbone']} (keras.applications), input {metrics['image_size']} px, "
        f"preprocessing {metrics.get('preprocess') or spec.module_name + '.preprocess_input'} inside the "
        "saved model",
        f"- weights: {metrics.get('weights_used')}",
        f"- training regime: `{metrics.get('train_mode')}`; step {metrics.get('best_epoch')} of "
        f"{metrics.get('epochs_run') or metrics.get('settings_fitted')} in history.csv (epoch, or probe "
        f"setting) chosen on validation loss ({number(metrics.get('best_val_loss'))})",
        "",
        "## Test metrics",
        f"{metrics.get('n_test')} test images; 95% intervals from the bootstrap over the test set "
        f"({metrics.get('bootstrap_unit')}-level). The test split chose nothing.",
        "",
        "| metric | value [95% CI] |",
        "|---|---|",
        *(f"| {name} | {with_interval(metrics, key, manifest=manifest)} |" for key, name in HEADLINE),
        f"| ECE | {number(metrics.get('ece'))} |",
        "",
        "## Calibration",
        f"Temperature {number(calibration.get('temperature'), 2)} fitted on validation"
        f"{bound_phrase(calibration)} test ECE "
        f"{number(calibration.get('ece_before'))} → {number(calibration.get('ece_after'))}, Brier "
        f"{number(calibration.get('brier_before'))} → {number(calibration.get('brier_after'))}.",
        "",
        "## Operating points",
        "Thresholds chosen on validation, rates on test (operating_points in metrics.json).",
        "",
        "| class | rule | threshold | sensitivity | specificity |",
        "|---|---|---|---|---|",
    ]
    for name, rules in (metrics.get("operating_points") or {}).items():
        if not isinstance(rules, dict):
            continue
        for rule, found in rules.items():
            if not isinstance(found, dict):  # a rule that could not be applied says why
                lines.append(f"| {name} | {rule} | {found} | — | — |")
                continue
            test = found.get("test", {})
            lines.append(f"| {name} | {rule} | {number(found.get('threshold'))} | "
                         f"{rate(test.get('sensitivity'))} | {rate(test.get('specificity'))} |")
    lines += ["", "## Known limits", *(f"- {limit}" for limit in limits(metrics, manifest)), ""]
    return "\n".join(lines)
