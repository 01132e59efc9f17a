"""Each cell of a one-process sweep starts from Keras's initial state, the last cell's models released."""

import gc
import weakref

import keras

from benchmark.runs.slate import clean_slate


def test_a_clean_slate_resets_kerass_names_and_releases_the_previous_models():
    keras.layers.Dense(1)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert keras.layers.Dense(1).name != "dense"  # names count up within a session
    gone = weakref.ref(model)
    gc.disable()  # only clean_slate may collect the model (a Keras model is held in reference cycles)
    try:
        del model
        clean_slate()
    finally:
        gc.enable()
    assert gone() is None
    assert keras.layers.Dense(1).name == "dense"
