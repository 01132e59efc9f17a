"""Seeding a run draws what keras.utils.set_random_seed draws, and leaves TensorFlow's global seed (whose
setting clears every compiled function) alone."""

import keras
import numpy as np
import tensorflow as tf

from backbones.seeding import seed_run


def drawn() -> list[np.ndarray]:
    """Initial weights and one dropout mask of a small model, drawn by Keras's seed generators."""
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4), keras.layers.Dropout(0.5)])
    mask = model(np.ones((2, 8), np.float32), training=True).numpy() != 0
    return [*model.get_weights(), mask, np.random.random(3)]


def test_a_seeded_run_draws_what_keras_set_random_seed_draws():
    global_seed = tf.compat.v1.get_seed(None)[0]
    seed_run(5)
    ours = drawn()
    assert tf.compat.v1.get_seed(None)[0] == global_seed  # not reset: compiled functions stay compiled
    try:
        keras.utils.set_random_seed(5)
        theirs = drawn()
    finally:
        tf.random.set_seed(global_seed)  # as this process had it (None: unset)
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    seed_run(6)
    assert not np.array_equal(drawn()[0], ours[0])
