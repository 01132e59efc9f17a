"""Run a Keras model once or twice as a TensorFlow graph that is traced but not optimised.

Eager Keras keeps every intermediate output of a functional model until the call returns: DenseNet121 in
training mode on 32 images at 128 px grew the process by 2.07 GB (InceptionResNetV2 1.35 GB), and glibc
keeps most of it, so a sweep carried a 3 GB floor from its first cell on. A traced graph frees each
tensor after its last use (+0.22 GB and +0.27 GB). Grappler's optimisation of a graph run once costs more
than it saves (DenseNet121: eager 3.9 s, traced and optimised 5.2 s, traced unoptimised 3.9 s;
InceptionResNetV2: 3.3, 8.1 and 5.3 s), so it is switched off while the graph is built. The results are
the same to the bit (BatchNorm statistics compared). Grad-CAM's gradients run this way; the BatchNorm
recalibration, which needs no gradient tape, now walks the model node by node instead (node_walk.py:
the same statistics, without the trace, in about half the time).
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import tensorflow as tf

OPTIMIZER_SWITCH = "disable_meta_optimizer"


@contextmanager
def graphs_unoptimized() -> Iterator[None]:
    """Functions first run inside this block are instantiated without Grappler; restored after."""
    previous = bool(tf.config.optimizer.get_experimental_options().get(OPTIMIZER_SWITCH, False))
    tf.config.optimizer.set_experimental_options({OPTIMIZER_SWITCH: True})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({OPTIMIZER_SWITCH: previous})


def one_shot(function: Callable[..., Any]) -> Callable[..., Any]:
    """`function` as a tf.function whose graph is built unoptimised on its first call (later calls with the
    same input shapes reuse that graph); for work a process does once or twice per model."""
    traced = tf.function(function, autograph=False)

    def call(*args: Any) -> Any:
        with graphs_unoptimized():
            return traced(*args)

    return call
