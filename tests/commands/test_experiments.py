"""Every preset in conf/experiment/ composes and runs (tiny data, minimum sizes, one epoch per phase).

Parametrised over the folder, so a new preset is smoke-tested without touching this file.
"""

import pytest
from hydra import compose, initialize_config_dir

from backbones.registry import names
from benchmark.runs.pipeline import run
from benchmark.runs.progress import count_cells
from tests.conftest import CONF, tiny_overrides

PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def test_the_papers_presets_exist():
    assert {"gao2025_mobilenetv2", "bormane2024_all_backbones", "myrtle2024_augmented",
            "sun2024_resnet50"} <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_and_runs(preset, tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        paper = compose(config_name="config", overrides=[f"experiment={preset}"])
        cfg = compose(config_name="config", overrides=[
            f"experiment={preset}", *tiny_overrides(tmp_path), "train.max_epochs=1", "train.save_model=false",
            "train.run_eagerly=true",  # no graph tracing: seconds instead of a minute for big backbones
            f"train.warmup_epochs={min(paper.train.get('warmup_epochs', 0), 1)}",
        ])
    metrics = run(cfg)
    assert metrics["train_mode"] == paper.train.mode
    assert metrics["epochs_run"] <= 2 and 0 <= metrics["accuracy"] <= 1
    assert metrics["backbone"] == paper.backbone.name


def test_the_paper_settings_survive_composition():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        gao = compose(config_name="config", overrides=["experiment=gao2025_mobilenetv2"])
        sun = compose(config_name="config", overrides=["experiment=sun2024_resnet50"])
        myrtle = compose(config_name="config", overrides=["experiment=myrtle2024_augmented"])
        bormane = compose(config_name="config", overrides=["experiment=bormane2024_all_backbones"],
                          return_hydra_config=True)
        default_sweep = compose(config_name="config", overrides=["+sweep=all_backbones"],
                                return_hydra_config=True)
        assert count_cells(bormane) == len(names())  # glob(*): every backbone of the registry
        assert count_cells(default_sweep) == 3 * len(names())
    assert (gao.train.optimizer, gao.train.unfreeze, gao.train.max_epochs) == ("sgd", "all", 10)
    assert gao.train.step_size == 7 and gao.backbone.name == "mobilenetv2"
    assert (sun.image_size, sun.head.units, sun.train.finetune_lr) == (128, 1024, 1e-5)
    assert myrtle.augment.rotation > 0 and myrtle.augment.zoom > 0 and myrtle.augment.flip
    assert bormane.hydra.sweeper.params.backbone.startswith("glob(*)")  # every registry entry
    assert (bormane.train.patience, bormane.train.min_delta, bormane.train.max_epochs) == (3, 0.001, 10)
