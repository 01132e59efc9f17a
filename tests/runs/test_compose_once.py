"""The sweeper of conf/hydra/sweeper/compose_once.yaml: a cell's configuration composed once, the
validation before the first cell kept, and the launchers that run cells elsewhere unaffected."""

import pickle
from collections import Counter
from pathlib import Path

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.config_repository import ConfigRepository
from hydra._internal.utils import create_config_search_path
from hydra.core.plugins import Plugins
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from tests.conftest import CONF, run_cli

Plugins.instance()  # Hydra (re)loads every plugin module once; take the class it uses, as a sweep does
from hydra_plugins.medbench_sweeper.compose_once import ValidatedConfigs  # noqa: E402

CELL = ["backbone=vgg19", "seed=1"]


class CountingLoader(ConfigLoaderImpl):
    """Hydra's own config loader, counting the cells it composes."""

    composed = 0

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        type(self).composed += 1
        return super().load_sweep_config(master_config, sweep_overrides)


class CountingRepository(ConfigRepository):
    """Hydra's own config repository, counting the files it reads."""

    reads: Counter = Counter()

    def load_config(self, config_path: str):
        type(self).reads[config_path] += 1
        return super().load_config(config_path)


def loader_and_master() -> tuple[CountingLoader, DictConfig]:
    CountingLoader.composed = 0
    loader = CountingLoader(config_search_path=create_config_search_path(str(CONF)))
    master = loader.load_configuration("config", ["+sweep=all_backbones"], RunMode.MULTIRUN)
    return loader, master


def test_the_launcher_gets_the_validated_configuration_without_composing_it_again():
    hydra_loader, master = loader_and_master()
    loader = ValidatedConfigs(hydra_loader)
    loader.validate(master, CELL)
    launched = loader.load_sweep_config(master, CELL)
    assert CountingLoader.composed == 1
    assert launched.backbone.name == "vgg19" and launched.seed == 1
    fresh = hydra_loader.load_sweep_config(master, CELL)
    assert OmegaConf.to_container(launched) == OmegaConf.to_container(fresh)
    loader.load_sweep_config(master, CELL)  # handed out once (the launcher edits it): composed anew
    assert CountingLoader.composed == 3


def test_each_config_file_is_read_once_for_all_cells_and_each_cell_is_what_hydra_composes():
    hydra_loader, master = loader_and_master()
    CountingRepository.reads.clear()
    hydra_loader.repository = CountingRepository(create_config_search_path(str(CONF)))
    loader = ValidatedConfigs(hydra_loader)
    cells = [[f"backbone={name}", f"seed={seed}"] for name in ("vgg19", "resnet50") for seed in (0, 1)]
    for cell in cells:
        loader.validate(master, cell)
    assert CountingRepository.reads["backbone/vgg19"] == 1 and max(CountingRepository.reads.values()) == 1
    fresh_loader, _ = loader_and_master()  # Hydra's own, reading every file for every composition
    for cell in cells:  # no cell shares a node with another or with the kept files (Hydra edits them)
        launched, fresh = loader.load_sweep_config(master, cell), fresh_loader.load_sweep_config(master, cell)
        assert OmegaConf.to_container(launched) == OmegaConf.to_container(fresh)


def test_a_launcher_worker_receives_the_loader_without_the_validated_configurations():
    hydra_loader, master = loader_and_master()
    loader = ValidatedConfigs(hydra_loader)
    loader.validate(master, CELL)
    in_worker = pickle.loads(pickle.dumps(loader))
    assert in_worker.validated == {} and loader.validated  # the sweep's own copy keeps them
    assert in_worker.loader.repository.cache == {} and loader.loader.repository.cache  # and no files
    assert in_worker.load_sweep_config(master, CELL).backbone.name == "vgg19"


def test_a_mistyped_sweep_value_stops_the_sweep_before_its_first_cell(tmp_path: Path):
    result = run_cli(["--multirun", "backbone=mobilenetv2,resnet5", "seed=0",
                      f"results_dir={tmp_path / 'results'}", f"cache_dir={tmp_path / 'cache'}"])
    assert result.returncode == 2
    assert "Could not find 'backbone/resnet5' (choose one of: densenet121," in result.stderr
    assert not (tmp_path / "results" / "runs").exists() and not (tmp_path / "cache").exists()
