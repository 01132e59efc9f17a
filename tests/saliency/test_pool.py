"""Grad-CAM of a frozen run from pooled activations and its head equals the gradient path, and a sweep's
cell keeps the pool so the maps after the sweep never need the extractor."""

import json
import shutil

import keras
import numpy as np
import pytest
from omegaconf import OmegaConf

from backbones import batchnorm
from backbones.extractor import pooled_extractor
from backbones.registry import build, get
from benchmark.cli import CONF
from benchmark.errors import BenchmarkError
from benchmark.explain import explain_run
from benchmark.saliency.gradcam import (
    gradcam,
    has_spatial_information,
    mean_spearman,
    randomization_check,
    weighted_maps,
)
from benchmark.saliency.pool import (
    PANEL_CHOICE,
    activations,
    candidate_rows,
    head_weights,
    keep_pool,
    keeping_forward,
    pooling_only_after,
    read_pool,
)
from benchmark.train.features import extract
from benchmark.train.head import assemble, head_layers, head_on_features
from tests.conftest import compose_config

SIZE = 64  # both backbones' Grad-CAM layers are 2x2 or larger here


def disc_images(n: int) -> np.ndarray:
    """Dark images with bright discs in different places, so the maps have something to differ on."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    out = rng.uniform(0, 40, (n, SIZE, SIZE, 3))
    for image in out:
        for cy, cx in rng.uniform(8, SIZE - 8, (2, 2)):
            image[(yy - cy) ** 2 + (xx - cx) ** 2 < 80] += 180
    return out.clip(0, 255).astype(np.float32)


def frozen_classifier(name: str, images: np.ndarray) -> tuple[keras.Model, keras.Model, keras.Model]:
    """(extractor, head, assembled model) as a frozen run has them: random init, BatchNorm recalibrated."""
    spec = get(name)
    keras.utils.set_random_seed(0)
    base = build(spec, SIZE, None)
    batchnorm.recalibrate(base, spec.preprocess_input(images.copy()))
    extractor = pooled_extractor(base, spec, SIZE)
    layers = head_layers(3, OmegaConf.create({"units": 16, "dropout": 0.5}))
    model = assemble(extractor, layers)
    return extractor, head_on_features(extractor.output_shape[-1], layers), model


@pytest.mark.parametrize("name", ["mobilenetv2", "vgg19"])  # the layer is the backbone's last; or max-pooled
def test_pooled_maps_and_randomisation_test_equal_the_gradient_path(name, tmp_path):
    images = disc_images(6)
    extractor, head, model = frozen_classifier(name, images)
    layer = get(name).last_conv_layer
    before = [w.copy() for w in extractor.get_weights()]
    path = keep_pool(extractor, layer, images, np.array([0, 1, 2, 0, 1, 2]), 2, 7, tmp_path / "pool.npz")
    pool = read_pool(path)
    assert all(np.array_equal(a, b) for a, b in zip(before, extractor.get_weights(), strict=True))
    rows = pool["rows"]
    assert len(rows) == 6 and len(pool["redrawn_features"]) == 2  # all six candidates; two checked
    classes = np.array([2, 0, 1, 1, 2, 0])[rows]
    expected = gradcam(model, images[rows], classes, layer)
    got = weighted_maps(pool["activations"], head_weights(head, pool["features"], classes), (SIZE, SIZE))
    assert has_spatial_information(expected)
    np.testing.assert_allclose(got, expected, atol=2e-4)
    redrawn = weighted_maps(
        pool["redrawn_activations"], head_weights(head, pool["redrawn_features"], classes[:2]), (SIZE, SIZE)
    )
    expected_rho = randomization_check(model, images[rows[:2]], classes[:2], layer, 7)
    assert mean_spearman(got[:2], redrawn) == pytest.approx(expected_rho, abs=1e-3)


def test_the_pool_kept_by_the_test_extraction_equals_a_second_forward_pass(tmp_path):
    images, labels = disc_images(7), np.array([0, 1, 2, 0, 1, 2, 0])
    extractor, _, _ = frozen_classifier("mobilenetv2", images)
    layer, kept = get("mobilenetv2").last_conv_layer, {}
    rows = candidate_rows(labels, 1, 3)  # 4 of the 7 rows, spread over the batches of 3 below
    forward = keeping_forward(extractor, layer, rows, kept, np.arange(7))  # every test row passes
    features = extract(extractor, images, 3, "test", forward=forward)
    assert sorted(kept) == sorted(rows.tolist())
    expected_layer, expected_features = activations(extractor, layer, images[rows])
    kept_layer, kept_features = (np.stack([kept[int(r)][k] for r in rows]) for k in (0, 1))
    np.testing.assert_array_equal(kept_features, features[rows])
    np.testing.assert_allclose(kept_layer, expected_layer, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(features[rows], expected_features, rtol=1e-4, atol=1e-5)
    from_extraction = read_pool(keep_pool(extractor, layer, images, labels, 1, 3, tmp_path / "a.npz", kept))
    passed_again = read_pool(keep_pool(extractor, layer, images, labels, 1, 3, tmp_path / "b.npz"))
    assert from_extraction.keys() == passed_again.keys()
    for name in from_extraction:
        np.testing.assert_allclose(from_extraction[name], passed_again[name], rtol=1e-4, atol=1e-5)


def test_a_test_extraction_of_some_rows_keeps_each_pooled_image_under_its_own_row(tmp_path):
    """Rows whose features were reused from the cache never pass the network: what the others keep is
    filed under their split rows, not under their place in the extraction."""
    images, labels = disc_images(7), np.array([0, 1, 2, 0, 1, 2, 0])
    extractor, _, _ = frozen_classifier("mobilenetv2", images)
    layer, kept = get("mobilenetv2").last_conv_layer, {}
    rows, passed = candidate_rows(labels, 1, 3), np.array([1, 2, 4, 5, 6])
    forward = keeping_forward(extractor, layer, rows, kept, passed)
    features = extract(extractor, images, 2, "test", forward=forward, rows=passed)
    assert len(features) == len(passed) and sorted(kept) == sorted(set(rows.tolist()) & set(passed.tolist()))
    both = np.array(sorted(kept))
    expected_layer, expected_features = activations(extractor, layer, images[both])
    kept_layer, kept_features = (np.stack([kept[int(r)][k] for r in both]) for k in (0, 1))
    np.testing.assert_allclose(kept_layer, expected_layer, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(kept_features, expected_features, rtol=1e-4, atol=1e-5)
    partly_kept = read_pool(keep_pool(extractor, layer, images, labels, 1, 3, tmp_path / "a.npz", kept))
    passed_again = read_pool(keep_pool(extractor, layer, images, labels, 1, 3, tmp_path / "b.npz"))
    for name in passed_again:  # the pooled images the extraction did not keep are passed now
        np.testing.assert_allclose(partly_kept[name], passed_again[name], rtol=1e-4, atol=1e-5)


def test_a_layer_followed_by_more_than_pooling_keeps_no_pool(tmp_path):
    images = disc_images(3)
    extractor, _, _ = frozen_classifier("mobilenetv2", images)
    assert pooling_only_after(extractor, "out_relu")
    assert not pooling_only_after(extractor, "block_16_project")  # BatchNorm and a conv follow it
    path = tmp_path / "pool.npz"
    assert keep_pool(extractor, "block_16_project", images, np.array([0, 1, 2]), 1, 0, path) is None
    assert not path.exists()


def test_candidates_take_the_classes_in_turn_and_depend_only_on_the_seed():
    labels = np.repeat([0, 1, 2], [10, 3, 20])
    rows = candidate_rows(labels, 2, 0)
    assert len(rows) == PANEL_CHOICE * 2 == len(set(rows.tolist()))
    assert sorted(labels[rows[:3]].tolist()) == [0, 1, 2]  # every class before any class twice
    assert np.array_equal(rows, candidate_rows(labels, 2, 0))
    assert not np.array_equal(rows, candidate_rows(labels, 2, 1))
    assert sorted(candidate_rows(labels[:4], 2, 0).tolist()) == [0, 1, 2, 3]  # fewer images: all of them


def test_a_sweep_cell_keeps_the_pool_and_grad_cam_then_needs_no_extractor(tmp_path):
    from benchmark.runs.pipeline import run

    metrics = run(compose_config(tmp_path, "image_size=64", "+explain.after_sweep_images=4"))
    (run_dir,) = (tmp_path / "results" / "runs" / "synthetic" / "mobilenetv2").glob("seed0-*")
    assert "gradcam_images" not in metrics and len(list((tmp_path / "cache" / "gradcam").glob("*.npz"))) == 1
    shutil.rmtree(tmp_path / "results" / "extractors")  # the pooled path must not need it
    explain_cfg = OmegaConf.load(CONF / "explain.yaml")
    explain_cfg.run, explain_cfg.n_images = str(run_dir), 4
    scores = explain_run(explain_cfg)
    assert scores["gradcam_method"].startswith("head gradient") and scores["gradcam_images"] == 4
    assert -1.0 <= scores["gradcam_randomization_spearman"] <= 1.0
    assert (run_dir / "gradcam.png").stat().st_size > 0
    assert json.loads((run_dir / "metrics.json").read_text())["gradcam_method"] == scores["gradcam_method"]
    explain_cfg.n_images = 3  # no pool for these settings: the gradient path, which needs the extractor
    with pytest.raises(BenchmarkError, match="extractor .* is missing"):
        explain_run(explain_cfg)


def test_a_single_frozen_run_draws_its_grad_cam_from_the_pool_which_its_further_seeds_share(tmp_path):
    from benchmark.runs.pipeline import run

    first = run(compose_config(tmp_path, "image_size=64", "explain.n_images=4"))
    again = run(compose_config(tmp_path, "image_size=64", "explain.n_images=4", "seed=1"))  # cached features
    for metrics in (first, again):
        assert metrics["gradcam_method"].startswith("head gradient") and metrics["gradcam_images"] == 4
        assert -1.0 <= metrics["gradcam_randomization_spearman"] <= 1.0
    assert len(list((tmp_path / "cache" / "gradcam").glob("*.npz"))) == 1
