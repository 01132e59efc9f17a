"""Hydra's basic sweeper, each cell's configuration composed once instead of twice.

Before launching a batch, Hydra composes every cell's configuration (`validate_batch_is_legal`: a
mistyped sweep value fails before the first cell trains), and the launcher then composes each one again.
A composition re-reads and merges the config tree, about 0.2 s on 2 cores, so a default sweep of 21 cells
paid ~4.5 s twice. Here the validation keeps what it composed and the launcher of this process takes it:
the same check, the same configurations. `make sweep` run again when every cell is complete: 15.3 s with
Hydra's basic sweeper, 10.8 s with this one (medians of six runs in turn, a 2-core machine).
Launchers that run cells elsewhere (joblib, SLURM, Ray) get the loader without them and compose as before.
A kept configuration is ~160 KB until its cell launches; Hydra keeps every launched cell's in its job
return anyway (`max_batch_size` bounds both for a very large grid).

Each composition also read and parsed the same YAML files again (Hydra caches them for one composition
only): `KeptConfigFiles` keeps them for the sweep and gives each composition its own copy, since Hydra
merges the files' nodes without copying and then edits them. The 21 cells of a default sweep: 4.6-5.3 s
-> 3.3-3.7 s, the configurations equal.

The validation also checks medbench's values of every cell (the settings, the input size, the search
settings of `hparams_search` cells): refused for every cell of a batch, the sweep stops with one line
before that batch's first cell, the whole sweep's first unless `max_batch_size` splits it
(`benchmark.runs.settings.check_sweep`).
"""

import copy
from dataclasses import replace
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.config_repository import CachingConfigRepository, IConfigRepository
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_loader import ConfigLoader
from hydra.plugins.config_source import ConfigResult
from hydra.types import HydraContext, RunMode, TaskFunction
from omegaconf import DictConfig


class KeptConfigFiles(CachingConfigRepository):
    """Hydra's cache of the config files one composition reads, kept for all of them: each file is read and
    parsed once per search path, and every composition gets a copy of it to merge and edit."""

    def __init__(self, delegate: IConfigRepository, kept: dict | None = None) -> None:
        self.delegate = delegate
        self.cache = {} if kept is None else kept

    def __deepcopy__(self, memo: dict) -> "KeptConfigFiles":  # Hydra copies the repository per composition
        return KeptConfigFiles(copy.deepcopy(self.delegate, memo), self.cache)

    def __getstate__(self) -> dict:  # a launcher's worker reads its own files
        return {"delegate": self.delegate, "cache": {}}

    def load_config(self, config_path: str) -> ConfigResult | None:
        key = (tuple((source.provider, source.path) for source in self.get_sources()), config_path)
        if key not in self.cache:
            self.cache[key] = self.delegate.load_config(config_path=config_path)
        kept = self.cache[key]
        if kept is None:
            return None
        return replace(kept, config=copy.deepcopy(kept.config), header=dict(kept.header),
                       defaults_list=copy.deepcopy(kept.defaults_list))


class ValidatedConfigs(ConfigLoader):
    """Hydra's config loader, handing out a cell's validated configuration instead of composing it again."""

    def __init__(self, loader: ConfigLoader) -> None:
        self.loader = loader
        if isinstance(loader, ConfigLoaderImpl) and not isinstance(loader.repository, KeptConfigFiles):
            loader.repository = KeptConfigFiles(loader.repository)  # what every composition reads through
        self.validated: dict[tuple[str, ...], DictConfig] = {}

    def __getstate__(self) -> dict:  # a launcher's worker composes its own cells: send the loader only
        return {"loader": self.loader, "validated": {}}

    def validate(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        composed = self.loader.load_sweep_config(master_config, list(sweep_overrides))
        self.validated[tuple(sweep_overrides)] = composed
        return composed

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        validated = self.validated.pop(tuple(sweep_overrides), None)  # handed out once: the launcher edits it
        if validated is None:  # not validated in this process
            return self.loader.load_sweep_config(master_config, sweep_overrides)
        return validated

    def load_configuration(self, *args: Any, **kwargs: Any) -> DictConfig:
        return self.loader.load_configuration(*args, **kwargs)

    def get_search_path(self) -> Any:
        return self.loader.get_search_path()

    def get_sources(self) -> Any:
        return self.loader.get_sources()

    def list_groups(self, parent_name: str) -> list[str]:
        return self.loader.list_groups(parent_name)

    def get_group_options(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.loader.get_group_options(*args, **kwargs)

    def compute_defaults_list(self, config_name: str | None, overrides: list[str], run_mode: RunMode) -> Any:
        return self.loader.compute_defaults_list(config_name, overrides, run_mode)


class ComposeOnceSweeper(BasicSweeper):
    """`hydra/sweeper=compose_once`: Hydra's basic sweeper (same `params`, `max_batch_size`)."""

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from benchmark.cli import or_fail
        from benchmark.runs.settings import SWEEP_RULES, check_settings

        # the multirun's own settings (its launcher, its leaderboard), before any cell: one line, exit 2
        or_fail(lambda: check_settings(config, SWEEP_RULES), debug=bool(config.get("debug")))
        loader = ValidatedConfigs(hydra_context.config_loader)
        super().setup(
            hydra_context=replace(hydra_context, config_loader=loader), task_function=task_function,
            config=config,
        )

    def validate_batch_is_legal(self, batch: Any) -> None:
        loader = self.hydra_context.config_loader
        cells = [loader.validate(self.config, list(overrides)) for overrides in batch]
        # medbench's values (and search settings), refused for every cell: one `error:` line and exit 2 here,
        # before the batch's first cell, where the config's debug is known (debug=true: the traceback)
        from benchmark.cli import or_fail
        from benchmark.runs.settings import check_sweep

        whole_sweep = len(self.overrides) == 1  # not split by max_batch_size
        or_fail(lambda: check_sweep(cells, whole_sweep), debug=bool(self.config.get("debug")))
