"""The documents a newcomer reads first stay true to the code: ARCHITECTURE.md names every module, and the
README's example of adding a backbone is a registry entry that works."""

import re
from pathlib import Path

import numpy as np

import backbones.registry as registry

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "backbones", "hydra_plugins")


def package_rows(text: str) -> dict[str, str]:
    """The module map's rows by their package: "| `benchmark/data/` | ... |" -> "benchmark/data/"."""
    rows = ((re.match(r"\| `([\w/]+/)` \|", line), line) for line in text.splitlines())
    return {found.group(1): line for found, line in rows if found}


def named_in(text: str, module: Path) -> bool:
    """In its package's row of the map by file name (a name such as audit.py exists in two packages), by its
    path under benchmark/ anywhere (`report/load.py`), or, for a command, as `benchmark.<name>`; a module of
    a sub-package (benchmark/data/synthetic/render.py) by that sub-package's folder in its package's row."""
    relative = module.relative_to(ROOT)
    rows = package_rows(text)
    if relative.parts[0] == "benchmark" and len(relative.parts) == 2:  # a command or a shared module
        return module.name in text or f"benchmark.{module.stem}" in text
    if len(relative.parts) > 3:
        return f"{relative.parts[2]}/" in rows.get("/".join(relative.parts[:2]) + "/", "")
    package = "/".join(relative.parts[:-1]) + "/"
    in_row = module.name in rows.get(package, "")
    return in_row or (len(relative.parts) == 3 and "/".join(relative.parts[1:]) in text)


def test_architecture_names_every_module():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    modules = [path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
               if path.name not in ("__init__.py", "__main__.py")]
    unnamed = [str(path.relative_to(ROOT)) for path in modules if not named_in(text, path)]
    assert modules and not unnamed, f"ARCHITECTURE.md does not name {unnamed}"


def test_the_readmes_new_backbone_example_is_a_working_registry_entry():
    """The `BackboneSpec(...)` line of "Extending it", evaluated where the registry's entries are: its
    preprocessing mode is the one its module's preprocess_input applies (the registry tests' rule)."""
    from keras.applications import imagenet_utils

    example = re.search(r"^(BackboneSpec\(.*\)),?$", (ROOT / "README.md").read_text(), re.MULTILINE)
    assert example, "README's 'Extending it' has no BackboneSpec(...) line"
    spec = eval(example.group(1), vars(registry))  # noqa: S307  the README's own line, the registry's names
    assert spec.name not in registry.names() and spec.constructor is not None
    pixels = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype(np.float32)
    own = spec.preprocess_input(pixels.copy())
    assert np.allclose(imagenet_utils.preprocess_input(pixels.copy(), mode=spec.native_preprocess), own)
    network = spec.constructor(include_top=False, weights=None, input_shape=(spec.min_size, spec.min_size, 3))
    assert network.get_layer(spec.last_conv_layer)  # the Grad-CAM layer it names is there
