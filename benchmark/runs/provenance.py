"""Where and with what a number was made: library versions, git commit, machine, time, paper preset."""

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path


def git_commit() -> str:
    """The short commit of the checkout, with -dirty when tracked files differ from it."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (out.stdout.strip() + ("-dirty" if dirty else "")) if out.returncode == 0 else "unknown"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


VECTOR_EXTENSIONS = {  # /proc/cpuinfo flag -> name: what sets a CPU's convolution speed in oneDNN
    "avx2": "AVX2", "fma": "FMA", "avx_vnni": "AVX-VNNI", "avx512f": "AVX-512", "avx512_vnni": "AVX-512-VNNI",
    "avx512_bf16": "AVX-512-BF16", "avx512_fp16": "AVX-512-FP16", "amx_tile": "AMX",
    "asimd": "NEON", "sve": "SVE", "sve2": "SVE2",  # Arm
}


def vector_extensions(flags: set[str]) -> str:
    """The vector extensions among a CPU's flags, in `VECTOR_EXTENSIONS`' order: one model name ("AMD EPYC")
    covers CPUs whose forward passes differ 2-5x by these."""
    return " ".join(name for flag, name in VECTOR_EXTENSIONS.items() if flag in flags)


def cpu_flags() -> set[str]:
    """The CPU's flags as Linux lists them (x86 "flags", Arm "Features"); empty where /proc/cpuinfo is not
    there to say (macOS, Windows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def versions() -> dict[str, str]:
    import keras
    import numpy
    import sklearn
    import tensorflow

    return {
        "python": sys.version.split()[0],
        "tensorflow": tensorflow.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "sklearn": sklearn.__version__,
    }


def machine() -> dict:
    import tensorflow as tf

    gpus = [
        tf.config.experimental.get_device_details(g).get("device_name", g.name)
        for g in tf.config.list_physical_devices("GPU")
    ]
    return {
        "cpu": cpu_name(),
        "cpu_features": vector_extensions(cpu_flags()),
        "cpu_count": os.cpu_count(),
        "gpus": gpus,
        "platform": platform.platform(),
    }


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def preset() -> str | None:
    """The paper preset (`experiment=<name>`, conf/experiment/) the run was composed with. Hydra keeps a
    group's choice only in its own node, which the run's config and its hash leave out, so it is read
    here; None without a preset or outside a Hydra app (a config composed in code)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().runtime.choices.get("experiment")
