"""TensorFlow's thread pools sized to the launcher, so parallel cells share the cores instead of fighting.

TensorFlow sizes its pools to every core it sees. Two joblib workers on a 2-core machine would then run
four busy threads on two cores; `runtime.threads=auto` gives each of the launcher's parallel jobs its
share (cores // n_jobs); a SLURM or Ray cell gets the cores its launcher reserved for it. Pools can be
sized only before TensorFlow's first operation in the process, which is where `configure` is called
(benchmark.__main__).
"""

import logging
import os

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def available_cores() -> int:
    """Cores this process may run on (a SLURM/cgroup allocation, taskset), not the machine's total."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def local_jobs(launcher: DictConfig) -> int:
    """Cells the launcher runs at once on this machine: joblib's n_jobs (-1 = one per core), else 1."""
    n_jobs = int(launcher.get("n_jobs") or 1)
    return n_jobs if n_jobs > 0 else max(1, available_cores() + 1 + n_jobs)


def threads_for(setting: int | str, launcher: DictConfig) -> int | None:
    """The intra-op thread count to use; None = TensorFlow's default (all available cores). A launcher
    that gives each cell its cores (submitit's cpus_per_task, Ray's num_cpus) sets it; joblib shares."""
    if setting != "auto":
        return int(setting)
    per_cell = launcher.get("cpus_per_task") or OmegaConf.select(launcher, "ray.remote.num_cpus")
    if per_cell:
        return int(per_cell)
    jobs = local_jobs(launcher)
    return max(1, available_cores() // jobs) if jobs > 1 else None


def configure(threads: int | None) -> int:
    """Size TensorFlow's pools where a thread count is given (parallel jobs, `runtime.threads`, a SLURM or
    Ray worker's CPUs): intra-op `threads`, inter-op at most 2; returns the intra-op size in effect
    (0 = TensorFlow's default)."""
    import tensorflow as tf

    if threads is not None and tf.config.threading.get_intra_op_parallelism_threads() != threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
        except RuntimeError:  # TensorFlow already ran in this worker process: its pools stay as they are
            log.warning("TensorFlow already ran in this process: thread setting %d not applied", threads)
    return tf.config.threading.get_intra_op_parallelism_threads()
