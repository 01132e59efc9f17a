"""A clean slate for each cell of a sweep that runs in one process, without recompiling what it keeps.

keras.backend.clear_session also clears TensorFlow's whole kernel cache, so every further-seed cell
instantiated its kept head's train, test and predict functions again (benchmark/train/kept_heads.py):
0.3-0.5 s a cell (8 cells of two backbones: 29.0 s instead of 32.8 s without it). The cache need not be
cleared to release a cell's network: TensorFlow drops a function's cached kernels when the function is
garbage collected (EagerContext::RemoveFunction), which the collection below does for the cell's models.
"""

import functools
import gc
import threading

import tensorflow as tf
from keras.src.backend.common import global_state  # the state keras.backend.clear_session resets


def clean_slate() -> None:
    """keras.backend.clear_session(free_memory=True) but for TensorFlow's kernel cache: Keras's global
    state (layer names, seed generators) starts again, the previous cell's objects are collected."""
    global_state.GLOBAL_STATE_TRACKER = threading.local()
    global_state.GLOBAL_SETTINGS_TRACKER = threading.local()
    tf.compat.v1.reset_default_graph()
    gc.collect()


@functools.cache  # once per process: a second freeze would keep the cells' objects forever
def freeze_imports() -> None:
    """Move what importing TensorFlow and Keras left alive (about 416,000 objects, never freed) out of the
    garbage collector's reach (gc.freeze), so that no collection walks them again: a full collection cost
    0.2-0.26 s with them, each cell's clean slate makes one, and Keras's tracing triggers more
    (a default sweep: 33 full collections, 12.5 s; frozen, 6.4 s)."""
    gc.collect()
    gc.freeze()
