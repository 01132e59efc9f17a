"""A head kept by the process and re-seeded trains exactly as a new head of that seed would, on the
features of the same backbone or of another one of the same width."""

import gc
import weakref

import keras
import numpy as np
from omegaconf import open_dict

from benchmark.train import kept_heads
from benchmark.train.frozen import fit_head
from benchmark.train.kept_heads import assembled, seeded_head
from tests.conftest import compose_config


def features_and_labels(seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    x = {s: (3.0 + rng.normal(size=(n, 24))).astype(np.float32) for s, n in (("train", 60), ("val", 20))}
    return x, {s: rng.integers(0, 3, len(x[s])) for s in x}


def trained(head, x: dict, y: dict, cfg) -> tuple[np.ndarray, np.ndarray]:
    history, _ = fit_head(head.model, x, y, 3, cfg.train, cfg.seed)
    return history[["loss", "val_loss"]].to_numpy(), head.model.predict(x["val"], verbose=0)


def head_for(x: dict, cfg):
    return seeded_head(x["train"].shape[1], len(x["train"]), 3, cfg)


def test_a_kept_head_reseeded_matches_a_new_head_of_that_seed(tmp_path):
    cfg = compose_config(tmp_path)
    x, y = features_and_labels(0)
    for features, labels in ((x, y), features_and_labels(1)):  # a further seed; another backbone, same width
        kept_heads._kept.clear()
        with open_dict(cfg):
            cfg.seed = 0
        first = head_for(x, cfg)
        trained(first, x, y, cfg)  # seed 0 moves weights, optimizer state and the dropout's seed state
        with open_dict(cfg):
            cfg.seed = 1
        again = head_for(features, cfg)
        assert again is first, "the same width and settings reuse the compiled head"
        reused = trained(again, features, labels, cfg)

        kept_heads._kept.clear()
        fresh = trained(head_for(features, cfg), features, labels, cfg)
        np.testing.assert_array_equal(reused[0], fresh[0])  # every epoch's train and validation loss
        np.testing.assert_array_equal(reused[1], fresh[1])
        assert not np.allclose(fresh[1], fresh[1].mean(axis=0)), "the test needs predictions that differ"


def test_another_width_or_other_settings_get_their_own_head(tmp_path):
    cfg = compose_config(tmp_path)
    kept_heads._kept.clear()
    head = seeded_head(24, 60, 3, cfg)
    assert seeded_head(24, 60, 3, cfg) is head
    assert seeded_head(32, 60, 3, cfg) is not head  # another width
    assert seeded_head(24, 90, 3, cfg) is not head  # other steps compiled into one call
    assert seeded_head(24, 60, 4, cfg) is not head
    with open_dict(cfg):
        cfg.train.lr = cfg.train.lr / 10
    assert seeded_head(24, 60, 3, cfg) is not head


def trained_head(tmp_path) -> tuple:
    """(config, features, a new head trained on them under seed 0)."""
    cfg = compose_config(tmp_path)
    x, y = features_and_labels(0)
    kept_heads._kept.clear()
    head = head_for(x, cfg)
    trained(head, x, y, cfg)
    return cfg, x, head


def test_the_assembled_model_copies_the_head_and_leaves_the_kept_one_free(tmp_path):
    cfg, x, head = trained_head(tmp_path)
    pixels = keras.Input(shape=(24,), name="pixels")
    extractor = keras.Model(pixels, keras.layers.Identity()(pixels))  # stands in for backbone + pooling
    model = assembled(extractor, head)
    np.testing.assert_allclose(model.predict(x["val"], verbose=0), head.model.predict(x["val"], verbose=0))
    with open_dict(cfg):
        cfg.seed = 1
    before = model.predict(x["val"], verbose=0)
    assert head_for(x, cfg) is head  # re-seeded in place ...
    np.testing.assert_array_equal(model.predict(x["val"], verbose=0), before)  # ... this model keeps its own
    released = weakref.ref(extractor)
    del model, extractor
    gc.collect()
    assert released() is None, "the kept head must not hold the network it was assembled with"


def test_the_saved_head_is_the_trained_one_without_its_optimizer(tmp_path):
    _, x, head = trained_head(tmp_path)
    head.saved.save(tmp_path / "head.keras")
    loaded = keras.models.load_model(tmp_path / "head.keras")
    assert getattr(loaded, "optimizer", None) is None  # Adam's moments would triple head.keras
    expected = head.model.predict(x["val"], verbose=0)
    np.testing.assert_array_equal(loaded.predict(x["val"], verbose=0), expected)
