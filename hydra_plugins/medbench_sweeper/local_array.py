"""submitit's local executor with a bound on the cells running at once (`hydra/launcher=slurm_local`).

The local executor starts every task of an array at once, each a TensorFlow process of ~0.7-1 GB with
`cpus_per_task` threads: a default sweep (21 cells) would start 21 processes on a 2-core laptop. A SLURM
array is bounded by `array_parallelism`; here the same key bounds the local run, in groups of that size
(each group waits for its slowest cell), so trying the SLURM code path locally behaves like the cluster.
Registered only where the submitit plugin is installed (the `cluster` extra); without it Hydra cannot
find `hydra/launcher/submitit_local_array` and the command names the install (benchmark.cli).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn

try:
    from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher
except ImportError:  # the cluster extra is not installed
    LocalLauncher = None

if LocalLauncher is not None:

    class LocalArrayLauncher(LocalLauncher):
        """submitit_local, `array_parallelism` cells at a time."""

        def __init__(self, array_parallelism: int = 1, **params: Any) -> None:
            super().__init__(**params)
            if not isinstance(array_parallelism, int) or array_parallelism < 1:
                from benchmark.errors import BenchmarkError  # one line (cli.one_line unwraps Hydra's wrapper)

                raise BenchmarkError(f"hydra.launcher.array_parallelism={array_parallelism}: use a whole "
                                     "number, 1 or more (cells at once on this machine)")
            self.array_parallelism = array_parallelism

        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
            returns: list[JobReturn] = []
            for start in range(0, len(job_overrides), self.array_parallelism):
                group = job_overrides[start:start + self.array_parallelism]
                returns.extend(super().launch(group, initial_job_idx + start))
            return returns

    @dataclass
    class LocalArrayConf(LocalQueueConf):
        _target_: str = "hydra_plugins.medbench_sweeper.local_array.LocalArrayLauncher"
        array_parallelism: int = 1  # cells at once, as a SLURM array's bound

    ConfigStore.instance().store(group="hydra/launcher", name="submitit_local_array", node=LocalArrayConf,
                                 provider="medbench")
