"""Seeding a run the way keras.utils.set_random_seed does, without clearing TensorFlow's compiled functions.

keras.utils.set_random_seed ends with tf.random.set_seed, and TensorFlow's eager context clears the
kernels of every function it has instantiated when that seed is set (context.py, _set_global_seed:
TFE_ContextClearCaches). A sweep seeds each cell's head, so the next call of the backbone's graph ran
Grappler over the whole network again (DenseNet121: +1.6 s in every cold cell, before its Grad-CAM pool
and its latency) and every kept head re-instantiated its train, test and predict functions.

What Keras 3 draws on TensorFlow — initial weights, dropout masks, augmentation — comes from its own seed
generators, seeded from Python's `random`. TensorFlow's global seed reaches only TensorFlow's own
random ops: the frozen head's epochs are ordered by NumPy (train/head.py, feature_batches), so seeding
Python, NumPy and Keras's global generator is all a frozen run needs. Fine-tuning shuffles with tf.data and
keeps keras.utils.set_random_seed (its model is new anyway).
"""

import random

import numpy as np
from keras.src.backend.common import global_state  # the state set_random_seed resets (Keras 3)
from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR
from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED


def seed_run(seed: int) -> None:
    """Python, NumPy and Keras's global seed generator, as keras.utils.set_random_seed(seed) sets them."""
    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)
