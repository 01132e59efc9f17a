"""Training-time augmentation as Keras preprocessing layers (they are identity at inference)."""

import keras
from omegaconf import DictConfig


def is_active(cfg: DictConfig) -> bool:
    return bool(cfg.flip) or any(cfg[k] > 0 for k in ("rotation", "zoom", "translation", "contrast"))


def augmenter(cfg: DictConfig, seed: int) -> keras.Sequential | None:
    """The configured transformations on raw 0-255 pixels, seeded; None when nothing is enabled."""
    if not is_active(cfg):
        return None
    layers: list[keras.layers.Layer] = []
    if cfg.flip:
        layers.append(keras.layers.RandomFlip(cfg.flip, seed=seed))
    if cfg.rotation > 0:
        layers.append(keras.layers.RandomRotation(cfg.rotation, fill_mode="constant", seed=seed + 1))
    if cfg.zoom > 0:
        layers.append(keras.layers.RandomZoom(cfg.zoom, fill_mode="constant", seed=seed + 2))
    if cfg.translation > 0:
        layers.append(keras.layers.RandomTranslation(cfg.translation, cfg.translation, fill_mode="constant",
                                                     seed=seed + 3))
    if cfg.contrast > 0:
        layers.append(keras.layers.RandomContrast(cfg.contrast, value_range=(0, 255), seed=seed + 4))
    return keras.Sequential(layers, name=f"augment_{cfg.name}")
