"""`make bench`: the speed claims of the README, measured on this machine and checked against targets.

Claims live here, not in timed tests: test machines vary, a benchmark reports what it measured.
"""

import logging
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from benchmark import cli
from benchmark.files import write_json, write_text

log = logging.getLogger("benchmark.bench")


def backbone_speed(name: str, cfg: DictConfig) -> dict:
    """Frozen feature extraction (images/s) and batch-1 latency of a random-init backbone + pooling."""
    import keras

    from backbones.extractor import pooled_extractor
    from backbones.registry import build, get
    from benchmark.metrics.efficiency import timed_calls

    spec = get(name)
    keras.utils.set_random_seed(0)
    extractor = pooled_extractor(build(spec, cfg.image_size, None), spec, cfg.image_size)
    images = np.random.default_rng(0).integers(0, 256, (cfg.n_images, cfg.image_size, cfg.image_size, 3))
    batch = images[: cfg.batch_size].astype(np.float32)
    per_batch = statistics.median(timed_calls(extractor, batch, 1, max(1, cfg.n_images // cfg.batch_size)))
    latency = statistics.median(timed_calls(extractor, batch[:1], 3, cfg.latency_runs))
    return {"backbone": name, "extraction_ips": cfg.batch_size / per_batch, "latency_ms": latency * 1000,
            "params_m": extractor.count_params() / 1e6}


def cache_speedup(cfg: DictConfig) -> dict:
    """Wall time of a cold default run vs the same run with another seed on the warm caches."""
    from hydra import compose, initialize_config_dir

    from benchmark.runs.pipeline import run

    shutil.rmtree(cfg.work_dir, ignore_errors=True)
    work = Path(cfg.work_dir)
    common = [f"backbone={cfg.cache_backbone}", "backbone.weights=null", f"results_dir={work / 'results'}",
              f"cache_dir={work / 'cache'}", f"data_dir={work / 'data'}"]
    seconds = {}
    for label, seed in (("cold", 0), ("warm", 1)):
        with initialize_config_dir(config_dir=str(cli.CONF), version_base="1.3"):
            run_cfg = compose(config_name="config", overrides=[*common, f"seed={seed}"])
        started = time.perf_counter()
        run(run_cfg)
        seconds[label] = time.perf_counter() - started
    speedup = seconds["cold"] / seconds["warm"]
    return {"cold_run_s": seconds["cold"], "warm_run_s": seconds["warm"], "speedup": speedup,
            "target": cfg.min_cache_speedup, "passed": speedup >= cfg.min_cache_speedup}


def markdown(speeds: list[dict], cache: dict, machine: dict) -> str:
    gpus = machine["gpus"] or "none"
    lines = [
        f"# Benchmark ({machine['cpu']}, {machine['cpu_count']} cores, GPUs: {gpus})", "",
        f"Input {speeds[0]['image_size']} px, random-init weights (speed does not depend on them).", "",
        "| backbone | params (M) | frozen extraction (img/s) | latency batch 1 (ms) |", "|---|---|---|---|",
    ]
    lines += [f"| {s['backbone']} | {s['params_m']:.1f} | {s['extraction_ips']:.1f} | {s['latency_ms']:.1f} |"
              for s in speeds]
    verdict = "PASS" if cache["passed"] else "FAIL"
    lines += ["", f"Feature cache: a default run took {cache['cold_run_s']:.1f} s cold and "
              f"{cache['warm_run_s']:.1f} s for another seed on the warm cache: {cache['speedup']:.1f}x "
              f"(target >= {cache['target']:.1f}x): **{verdict}**", ""]
    return "\n".join(lines)


def work(cfg: DictConfig) -> None:
    from backbones.registry import names
    from benchmark.runs.provenance import machine

    speeds = []
    for name in cfg.backbones or names():
        speeds.append(backbone_speed(name, cfg) | {"image_size": cfg.image_size})
        log.info("%-18s %7.1f img/s  %6.1f ms", name, speeds[-1]["extraction_ips"], speeds[-1]["latency_ms"])
    cache = cache_speedup(cfg)
    report = markdown(speeds, cache, machine())
    write_text(Path(cfg.out_dir) / "bench.md", report)
    write_json(Path(cfg.out_dir) / "bench.json", {"backbones": speeds, "cache": cache, "machine": machine()})
    print(report)
    if not cache["passed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    cli.main("bench", work)
