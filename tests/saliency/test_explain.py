"""Grad-CAM and its randomisation check on real Keras models, and `python -m benchmark.explain`."""

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from omegaconf import OmegaConf

from backbones import batchnorm
from backbones.extractor import pooled_extractor
from backbones.registry import build, get
from benchmark.errors import BenchmarkError
from benchmark.explain import main
from benchmark.saliency.explain import choose_images, explain
from benchmark.saliency.gradcam import (
    gradcam,
    mean_spearman,
    not_compared,
    randomization_check,
    redrawn_backbone,
)
from benchmark.train.head import assemble, head_layers
from tests.conftest import run_cli

SIZE = 64  # MobileNetV2's last map is 2x2 here; at its 32 px minimum it is 1x1 and every map is flat
PNG = b"\x89PNG\r\n\x1a\n"


def evidence_model(with_kernel: bool) -> keras.Model:
    """A classifier with a known answer: class 0 = mean red, class 1 = mean green of a 2x-pooled map.

    With a kernel, the backbone is a 1x1 conv that keeps red and green; without, it only pools (then
    nothing in the backbone can be re-drawn and the randomisation check must report 1).
    """
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(2, 1, use_bias=False, name="pick")(inputs) if with_kernel else inputs
    base = keras.Model(inputs, keras.layers.AveragePooling2D(2, name="pooled")(x), name="base")
    pixels = keras.Input((16, 16, 3), name="pixels")
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(base(pixels))
    head = keras.layers.Dense(2, activation="softmax", name="head_output")
    model = keras.Model(pixels, head(pooled))
    if with_kernel:
        base.get_layer("pick").set_weights([np.eye(3, 2).reshape(1, 1, 3, 2)])
    head.set_weights([np.eye(base.output_shape[-1], 2), np.zeros(2)])
    return model


def red_and_green() -> np.ndarray:
    """A red square top-left and a green square bottom-right."""
    image = np.zeros((1, 16, 16, 3), np.float32)
    image[0, :8, :8, 0] = 200.0
    image[0, 8:, 8:, 1] = 120.0
    return image


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Six dark images with bright discs in different places, so maps have something to differ on."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    out = rng.uniform(0, 40, (6, SIZE, SIZE, 3))
    for image in out:
        for cy, cx in rng.uniform(8, SIZE - 8, (2, 2)):
            image[(yy - cy) ** 2 + (xx - cx) ** 2 < 80] += 180
    return out.clip(0, 255).astype(np.float32)


@pytest.fixture(scope="module")
def mobilenet(images) -> keras.Model:
    """The assembled classifier the run pipeline saves: random MobileNetV2 (recalibrated BN) + head."""
    spec = get("mobilenetv2")
    keras.utils.set_random_seed(0)  # as benchmark.weights builds a random-init backbone
    base = build(spec, SIZE, None)
    batchnorm.recalibrate(base, spec.preprocess_input(images.copy()))
    layers = head_layers(3, OmegaConf.create({"units": 16, "dropout": 0.5}))
    return assemble(pooled_extractor(base, spec, SIZE), layers)


def test_gradcam_finds_each_class_where_its_evidence_is():
    image = red_and_green()
    red, green = gradcam(evidence_model(with_kernel=True), np.repeat(image, 2, 0), np.array([0, 1]), "pooled")
    assert red.shape == green.shape == (16, 16)
    assert red[:6, :6].min() == pytest.approx(1.0) and red[10:, 10:].max() == 0.0
    assert green[10:, 10:].min() == pytest.approx(1.0) and green[:6, :6].max() == 0.0


def test_gradcam_of_a_real_backbone_is_a_normalised_map_per_image_and_class(mobilenet, images):
    layer = get("mobilenetv2").last_conv_layer
    maps = gradcam(mobilenet, images, np.zeros(len(images), int), layer)
    assert maps.shape == (len(images), SIZE, SIZE) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert all(peak in (0.0, pytest.approx(1.0)) for peak in maps.max(axis=(1, 2)))
    assert np.abs(maps[0] - maps[1]).mean() > 0.01, "two images gave the same map"
    other_class = gradcam(mobilenet, images, np.ones(len(images), int), layer)
    assert np.abs(maps - other_class).mean() > 0.01, "two classes gave the same maps"


def test_choose_images_mixes_correct_and_wrong_deterministically():
    y_true = np.zeros(15, int)
    y_pred = np.r_[np.zeros(10, int), np.ones(5, int)]  # rows 0-9 correct, 10-14 wrong
    rows = choose_images(y_true, y_pred, 8, seed=1)
    assert len(set(rows)) == 8 and (rows < 10).sum() == 4 and (rows >= 10).sum() == 4
    assert np.array_equal(rows, choose_images(y_true, y_pred, 8, seed=1))
    assert not np.array_equal(rows, choose_images(y_true, y_pred, 8, seed=2))
    assert (choose_images(y_true, y_pred, 14, seed=0) >= 10).sum() == 5  # only 5 wrong: correct make up
    assert sorted(choose_images(y_true, y_true, 20, seed=0)) == list(range(15))


def test_randomization_check_redraws_the_backbone_kernels_only_and_leaves_the_model_alone(mobilenet, images):
    layer = get("mobilenetv2").last_conv_layer
    before = [w.copy() for w in mobilenet.get_weights()]
    spearman = randomization_check(mobilenet, images, np.zeros(len(images), int), layer, seed=0)
    assert np.isfinite(spearman) and -1.0 <= spearman <= 1.0
    assert all(np.array_equal(a, b) for a, b in zip(before, mobilenet.get_weights(), strict=True))
    # seed=0 is also the seed the backbone was drawn with: the re-draw must still differ from it.
    with redrawn_backbone(mobilenet, layer, seed=0) as redrawn:
        for source, target in zip(before, redrawn.weights, strict=True):
            changed = len(source.shape) >= 2 and not target.path.startswith("head_")
            assert np.array_equal(source, target.numpy()) != changed, target.path
    assert all(np.array_equal(a, b) for a, b in zip(before, mobilenet.get_weights(), strict=True))


def test_randomization_check_is_one_when_the_backbone_has_nothing_learned():
    model = evidence_model(with_kernel=False)
    assert randomization_check(model, red_and_green(), np.array([0]), "pooled", seed=0) == pytest.approx(1.0)


def test_the_check_is_not_applicable_when_the_maps_have_no_spatial_information(tmp_path):
    """MobileNetV2 at its 32 px minimum ends in a 1x1 map: every Grad-CAM map is flat, and a Spearman
    number (it used to print 0.000, which reads as a pass) would be meaningless."""
    spec = get("mobilenetv2")
    keras.utils.set_random_seed(0)
    model = assemble(pooled_extractor(build(spec, 32, None), spec, 32),
                     head_layers(2, OmegaConf.create({"units": 8, "dropout": 0.0})))
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    assert randomization_check(model, pixels, np.zeros(3, int), spec.last_conv_layer, seed=0) is None
    scores = explain(model, pixels, np.array([0, 1, 0]), np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]]),
                     ["a", "b"], "mobilenetv2", 3, 0, tmp_path / "gradcam.png")
    assert scores["gradcam_randomization_spearman"] is None
    assert scores["gradcam_randomization"].startswith("not applicable")


def test_blank_maps_of_the_redrawn_network_are_no_pass():
    """QA: every re-drawn map constant scored 0.0, the strongest pass, for a comparison of nothing: a blank
    map ranks nothing, on either side, and is left out."""
    informative = np.random.default_rng(0).random((3, 4, 4))
    blank = np.zeros((3, 4, 4))
    assert mean_spearman(informative, blank) is None
    assert not_compared(informative) == "not applicable (the re-drawn model's maps are blank)"
    some = informative.copy()
    some[0] = 0.0
    assert mean_spearman(informative, some) == pytest.approx(1.0)  # the two compared images agree
    assert mean_spearman(blank, informative) is None
    assert not_compared(blank) == "not applicable (maps without spatial information)"


def test_the_overlay_is_the_image_and_the_coloured_map_mixed_by_alpha():
    from matplotlib import colormaps

    from benchmark.figures.gradcam import Overlay, blend

    images = np.stack([np.full((2, 2, 3), 255.0), np.zeros((2, 2, 3))]).astype(np.float32)
    maps = np.array([np.ones((2, 2)), [[0.0, 1.0], [0.5, 0.25]]], np.float32)
    mixed = blend(images, maps, Overlay(alpha=0.4, colormap="viridis"))
    assert mixed.shape == (2, 2, 2, 3) and mixed.min() >= 0.0 and mixed.max() <= 1.0
    np.testing.assert_allclose(mixed[0, 0, 0], 0.6 + 0.4 * np.array(colormaps["viridis"](1.0)[:3]), atol=1e-6)
    np.testing.assert_allclose(mixed[1, 1, 0], 0.4 * np.array(colormaps["viridis"](0.5)[:3]), atol=1e-6)
    white = blend(images[:1], maps[:1], Overlay(alpha=0.4, colormap="gray"))  # 0.6 in float32 + 0.4 > 1
    assert white.max() <= 1.0  # or matplotlib warns that it clips the panel


def test_explain_writes_the_figure_and_returns_the_metrics(mobilenet, images, tmp_path):
    y_true = np.array([0, 1, 2, 0, 1, 2])
    probabilities = np.eye(3)[[0, 1, 0, 2, 1, 1]] * 0.6 + 0.1  # 3 correct, 3 wrong
    args = (mobilenet, images.astype(np.uint8), y_true, probabilities, ["a", "b", "c"], "mobilenetv2")
    scores = explain(*args, 4, 0, tmp_path / "gradcam.png")
    assert scores.keys() == {
        "gradcam_images", "gradcam_randomization_spearman", "gradcam_randomization", "gradcam_method"
    }
    assert scores["gradcam_method"] == "gradient of the class score through the model"
    assert scores["gradcam_images"] == 4 and -1.0 <= scores["gradcam_randomization_spearman"] <= 1.0
    assert (tmp_path / "gradcam.png").read_bytes().startswith(PNG)
    assert explain(*args, 0, 0, tmp_path / "none.png") == {} and not (tmp_path / "none.png").exists()
    with pytest.raises(BenchmarkError, match="n_images=-1"):
        explain(*args, -1, 0, tmp_path / "none.png")


@pytest.fixture
def run_dir(saved_run, tmp_path) -> Path:
    """A private copy of the session's finished run (explaining it changes its files)."""
    return Path(shutil.copytree(saved_run[0], tmp_path / "explained"))


def test_cli_explains_a_finished_run(run_dir):
    before = json.loads((run_dir / "metrics.json").read_text())
    result = run_cli([f"run={run_dir}", "n_images=4"], module="benchmark.explain")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "gradcam.png").read_bytes().startswith(PNG)
    after = json.loads((run_dir / "metrics.json").read_text())
    added = ("gradcam_images", "gradcam_randomization_spearman", "gradcam_randomization", "gradcam_method")
    assert after == {**before, **{k: after[k] for k in added}}
    assert after["gradcam_images"] == 4


def test_cli_refuses_a_run_without_a_model(run_dir, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("model.keras", "head.keras", "gradcam.png"))
    with pytest.raises(SystemExit) as exit_info:
        main([f"run={copy}"])
    assert exit_info.value.code == 2 and not (copy / "gradcam.png").exists()
    error = f"error: run {copy} has no model.keras or head.keras: re-run it with train.save_model=true"
    assert capsys.readouterr().err.strip().splitlines() == [error]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "run is required"),
        (["run=/no/such/run"], "run /no/such/run is not a folder"),
        (["run="], "run= is empty: pass a run directory"),
        (["run=.", "n_image=3"], "n_image is not an option of benchmark.explain: use run, n_images, seed"),
        (["run=."], "is not a complete run (no metrics.json)"),
    ],
)
def test_cli_user_errors_are_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
