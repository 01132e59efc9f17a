"""Weights from HDF5 files written by Keras 2 (`model.save("x.h5")` or `save_weights("x.h5")`), such as
RadImageNet's no-top ResNet50, DenseNet121, InceptionV3 and InceptionResNetV2, matched by layer name.

Written here rather than using `model.load_weights(path, by_name=True)` because Keras matches exact
names and silently skips the rest, and the names of layers Keras named itself (`conv2d_17`) depend on
how many models the saving process had built before: InceptionV3 built second in a process starts at
`conv2d_94`. Such names are compared by their rank among the auto-named layers of the same kind, which
both Keras versions assign in construction order; every other name must match exactly.
"""

import re
from collections import defaultdict
from pathlib import Path

import h5py
import keras
import numpy as np

AUTO_NAME = re.compile(r"(conv2d|batch_normalization|depthwise_conv2d|separable_conv2d|dense)(?:_(\d+))?")


def is_keras2_h5(path: Path) -> bool:
    """A Keras 2 HDF5 file (whole model or weights only), as opposed to Keras 3's `.weights.h5`."""
    try:
        with h5py.File(path, "r") as f:
            return "model_weights" in f or bool(_names(f, "layer_names"))
    except OSError:
        return False


def _text(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _names(group: h5py.Group, attribute: str) -> list[str]:
    """A list of names stored as an attribute; Keras 2 splits one over 64 KB into `<name>0`, `<name>1`..."""
    if attribute in group.attrs:
        return [_text(v) for v in group.attrs[attribute]]
    chunks, index = [], 0
    while f"{attribute}{index}" in group.attrs:
        chunks += [_text(v) for v in group.attrs[f"{attribute}{index}"]]
        index += 1
    return chunks


def read_layers(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """{layer name: {weight name: array}} from every group of the file; weight names are read from the
    `weight_names` attributes (`conv1_conv/kernel:0`), so nested models' groups are read the same way."""
    layers: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    with h5py.File(path, "r") as f:
        root = f.get("model_weights", f)
        for group_name in _names(root, "layer_names"):
            group = root[group_name]
            for weight_name in _names(group, "weight_names"):
                *_, layer, weight = weight_name.split("/")
                layers[layer][weight.split(":")[0]] = np.asarray(group[weight_name])
    return dict(layers)


def canonical_names(names: list[str]) -> dict[str, str]:
    """name -> a name independent of the saving process: auto-names become `<kind>#<rank>`."""
    ranked: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for name in names:
        if match := AUTO_NAME.fullmatch(name):
            ranked[match.group(1)].append((int(match.group(2) or 0), name))
    canonical = {name: name for name in names}
    for kind, members in ranked.items():
        for rank, (_, name) in enumerate(sorted(members)):
            canonical[name] = f"{kind}#{rank}"
    return canonical


def assign_by_name(model: keras.Model, path: Path) -> tuple[list[str], list[str]]:
    """Set every weighted layer of `model` from the file; returns (layers the file lacks or does not
    fit, described) and (weighted layers of the file that the model has no use for). Nothing is assigned
    unless every layer fits, so a refused file leaves the model as it was."""
    stored = read_layers(path)
    renamed = canonical_names(list(stored))
    stored_by_canonical = {canonical: stored[name] for name, canonical in renamed.items()}
    weighted = [layer for layer in model.layers if layer.weights]
    model_canonical = canonical_names([layer.name for layer in weighted])
    problems, assignments = [], []
    for layer in weighted:
        values = stored_by_canonical.get(model_canonical[layer.name])
        if values is None:
            problems.append(f"{layer.name} (missing)")
            continue
        for weight in layer.weights:
            value = values.get(weight.name)
            if value is None or tuple(value.shape) != tuple(weight.shape):
                found = "missing" if value is None else f"shape {tuple(value.shape)}"
                problems.append(f"{layer.name}/{weight.name} ({found}, needs {tuple(weight.shape)})")
            else:
                assignments.append((weight, value))
    unused = sorted(set(stored_by_canonical) - set(model_canonical.values()))
    if not problems:
        for weight, value in assignments:
            weight.assign(value)
    return problems, [name for name in unused if stored_by_canonical[name]]
