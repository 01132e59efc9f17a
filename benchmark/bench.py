"""`make bench`: the speed claims of the README, measured on this machine and checked against targets.

Claims live here, not in timed tests: test machines vary, a benchmark reports what it measured.
"""

import logging
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from benchmark import cli
from benchmark.errors import BenchmarkError
from benchmark.files import read_json, size_bytes, write_json, write_text
from benchmark.runs.layout import runs_root

log = logging.getLogger("benchmark.bench")
EXTRA_SEED = 99  # the further seed run as its own process after the sweep


def fp32_peak(cfg: DictConfig) -> float:
    """The machine's measured fp32 FLOP/s: TensorFlow's matrix product (oneDNN's GEMM, the densest work a
    CPU does) of two `peak_matrix`-square matrices, the fastest of `peak_runs` after a warm-up call (a
    peak: on a shared machine a median of five read 182 GFLOP/s in a bench whose VGG19 forward itself ran
    201), on the threads the forward passes below use. The denominator of every backbone's FLOP ceiling."""
    import tensorflow as tf

    from benchmark.metrics.efficiency import timed_calls

    n = cfg.peak_matrix
    matrix = tf.constant(np.random.default_rng(0).standard_normal((n, n), np.float32))
    product = tf.function(lambda a: tf.linalg.matmul(a, a))
    seconds = min(timed_calls(lambda a: product(a).numpy(), matrix, 1, cfg.peak_runs))
    return 2 * n**3 / seconds


def float_ops_per_image(model) -> float:
    """Floating-point operations of one image's forward pass (a multiply-add counts two), counted by
    TensorFlow's profiler on the traced batch-1 graph: convolutions and matrix products, plus the
    element-wise operations it has costs for. The numerator of the FLOP ceiling."""
    import tensorflow as tf

    signature = tf.TensorSpec((1, *model.input_shape[1:]), tf.float32)
    call = tf.function(lambda x: model(x, training=False), autograph=False)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"  # the count only, no report on stdout
    graph = call.get_concrete_function(signature).graph
    return float(tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops)


def backbone_speed(name: str, cfg: DictConfig) -> dict:
    """Frozen feature extraction (images/s) and batch-1 latency of a random-init backbone + pooling, and
    its operations per image (the FLOP ceiling's numerator)."""

    from backbones.extractor import batch_free_forward, pooled_extractor
    from backbones.registry import build, get
    from backbones.seeding import seed_run
    from benchmark.metrics.efficiency import timed_calls

    spec = get(name)
    seed_run(0)
    extractor = pooled_extractor(build(spec, cfg.image_size, None), spec, cfg.image_size)
    images = np.random.default_rng(0).integers(0, 256, (cfg.n_images, cfg.image_size, cfg.image_size, 3))
    batch = images[: cfg.batch_size].astype(np.float32)
    batches = max(1, cfg.n_images // cfg.batch_size)
    forward = batch_free_forward(extractor)  # the graph the frozen mode's extraction runs
    per_batch = statistics.median(timed_calls(forward, batch, 1, batches))
    latency = statistics.median(timed_calls(forward, batch[:1], 1, cfg.latency_runs, cfg.latency_budget_s))
    found = {
        "backbone": name,
        "extraction_ips": cfg.batch_size / per_batch,
        "latency_ms": latency * 1000,
        "params_m": extractor.count_params() / 1e6,
        "gflop_per_image": float_ops_per_image(extractor) / 1e9,
    }
    if "onnxruntime" in cfg.engines:
        found |= onnxruntime_speed(extractor, batch, batches, cfg, found["extraction_ips"])
    return found


def onnxruntime_speed(extractor, batch: np.ndarray, batches: int, cfg: DictConfig, tf_ips: float) -> dict:
    """The same extractor exported and run by ONNX Runtime: export seconds, the export and the session
    together, images/s, and the images (128-px equivalents) from which those pay for themselves in raw
    forward time (a lower bound for runtime.onnx_min_workload: a run on ONNX Runtime does more, README).
    Exported and opened by `runtime_on_export`, as a run's engine is: its record times the export alone,
    and the folder is new, so the export is always written and timed here."""
    import tempfile

    import tensorflow as tf

    from benchmark.metrics.efficiency import timed_calls
    from benchmark.train.engines import runtime_on_export

    threads = tf.config.threading.get_intra_op_parallelism_threads()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "extractor.onnx"
        started = time.perf_counter()
        forward, export = runtime_on_export("onnxruntime", extractor, path, threads)
        ready_s = time.perf_counter() - started  # the export and the session: what an engine costs once
        export_s = export["export_s"]
        ips = cfg.batch_size / statistics.median(timed_calls(forward, batch, 1, batches))
    saved_per_image = 1 / tf_ips - 1 / ips
    return {
        "onnx_export_s": export_s,
        "onnxruntime_ready_s": ready_s,
        "onnxruntime_ips": ips,
        "break_even_images": ready_s / saved_per_image * (cfg.image_size / 128) ** 2
        if saved_per_image > 0 else None,
    }


def cache_speedup(cfg: DictConfig, runs: list[dict]) -> dict:
    """Wall time of the sweep's cold cell of `cache_backbone` (seed 0) vs its next seed on warm caches."""
    seconds = {
        m["seed"]: m["run_s"] for m in runs if m["backbone"] == cfg.cache_backbone and m["seed"] in (0, 1)
    }
    speedup = seconds[0] / seconds[1]
    return {
        "cold_run_s": seconds[0],
        "warm_run_s": seconds[1],
        "speedup": speedup,
        "target": cfg.min_cache_speedup,
        "passed": speedup >= cfg.min_cache_speedup,
    }


def tree_memory(process) -> int:
    """Bytes of memory a process and its children hold: the sum of their proportional set sizes (PSS:
    a page shared by k processes counts 1/k in each), their resident sizes where the system has no PSS.
    Summed resident sizes counted a forked child's copy-on-write pages twice: a sweep read 4.04 GB in a
    bench whose sample fell on a `git` call's fork, 2.19 GB when watched process by process."""
    import psutil

    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            memory = member.memory_full_info()
            total += getattr(memory, "pss", memory.rss)
        except psutil.AccessDenied:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def run_process(command: list[str], cwd: Path) -> dict:
    """Wall time and peak memory (the process and its children, `tree_memory`, sampled every 0.2 s)."""
    import psutil

    started = time.perf_counter()
    process = psutil.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    peak = 0
    while process.poll() is None:
        with suppress(psutil.Error):
            peak = max(peak, tree_memory(process))
        time.sleep(0.2)
    if process.returncode != 0:
        raise BenchmarkError(
            f"`{' '.join(command)}` failed (exit {process.returncode}): run it alone to see why"
        )
    return {"wall_s": time.perf_counter() - started, "peak_memory_gb": peak / 2**30}


def folder_gb(path: Path) -> float:
    return size_bytes(path) / 2**30


def default_sweep(cfg: DictConfig) -> dict:
    """`make sweep` as a user runs it, from empty caches; then again when it is complete; and one more
    seed as a separate process. Per-cell times come from the runs' own `run_s`."""
    work = Path(cfg.work_dir) / "sweep"
    shutil.rmtree(work, ignore_errors=True)
    paths = [f"results_dir={work / 'results'}", f"cache_dir={work / 'cache'}", f"data_dir={work / 'data'}"]
    sweep = [sys.executable, "-m", "benchmark", "--multirun", "+sweep=all_backbones", *paths]
    root = cli.CONF.parent
    cold = run_process(sweep, root)
    complete = run_process(sweep, root)
    started = run_process(
        [sys.executable, "-c", "import benchmark.runs.pipeline"], root
    )  # interpreter + imports
    extra = run_process(
        [
            sys.executable,
            "-m",
            "benchmark",
            f"backbone={cfg.cache_backbone}",
            f"seed={EXTRA_SEED}",
            "explain.n_images=0",
            *paths,
        ],
        root,
    )
    runs = [read_json(p) for p in runs_root(work / "results").glob("*/*/*/metrics.json")]
    further = [m["run_s"] for m in runs
               if m.get("features_from_cache") and m.get("seed") not in (0, EXTRA_SEED)]
    cold_cells = {m["backbone"]: m for m in runs if m.get("seed") == 0}  # each backbone's first cell
    engine = {name: m.get("extraction_engine", "tf") for name, m in cold_cells.items()}
    return {
        "cold": cold,
        "complete": complete,
        "interpreter_s": started["wall_s"],
        "separate_seed_s": extra["wall_s"],
        "further_seed_cell_s": max(further) if further else None,
        "further_seed_cell_median_s": statistics.median(further) if further else None,
        "results_gb": folder_gb(work / "results"),
        "extraction_s": {  # decode, preprocess, forward and cache write; building the network left out
            name: m["feature_extraction_s"] - m.get("extractor_ready_s", 0.0)
            for name, m in cold_cells.items()
        },
        "ready_s": {  # building, recalibrating and saving the network: once per backbone
            name: m.get("extractor_ready_s", 0.0) for name, m in cold_cells.items()
        },
        "steady_ips": {  # the same extraction's full batches after the first: the engine kept busy?
            name: m.get("extraction_ips") for name, m in cold_cells.items()
        },
        "engine": engine,
        "n_images": sum((runs[0].get("split_sizes") or {}).values()) if runs else 0,
        "engines": sorted(set(engine.values())),
        "memory_by_seed_mb": memory_by_seed(runs),
        "runs": runs,
    }


def memory_by_seed(runs: list[dict]) -> dict[int, list[float]]:
    """Each cell's peak resident memory (MB) of the sweep's one process, grouped by seed: one pass over
    the backbones per seed (the seeds are the sweep's outer loop, in ascending order as
    conf/sweep/all_backbones.yaml lists them). The first pass builds every network once; the later ones
    repeat the same work, so a cell that leaks shows as a pass higher than the one before."""
    passes: dict[int, list[float]] = {}
    for m in runs:
        if m.get("peak_memory_mb") is not None and m.get("seed") != EXTRA_SEED:
            passes.setdefault(m["seed"], []).append(m["peak_memory_mb"])
    return dict(sorted(passes.items()))


def memory_growth_mb(passes: dict[int, list[float]]) -> float | None:
    """The last pass's highest cell over the second pass's: what the process grew by while it repeated
    the same cells (the first pass is left out: each network's build raises the high-water mark once)."""
    seeds = list(passes)
    return max(passes[seeds[-1]]) - max(passes[seeds[1]]) if len(seeds) >= 3 else None


def naive_vs_cached(cfg: DictConfig) -> dict:
    """The papers' way (full model, frozen base, features recomputed every epoch) vs the cached frozen
    mode (features once, then the head compiled and fed as train/frozen.py does), same images, same
    epochs, the project's default head and frozen-training settings, side by side."""
    import keras
    from omegaconf import OmegaConf

    from backbones.extractor import pooled_extractor
    from backbones.registry import build, get
    from backbones.seeding import seed_run
    from benchmark.train.features import extract
    from benchmark.train.head import assemble, feature_batches, head_layers, head_on_features, steps_per_epoch
    from benchmark.train.kept_heads import compile_head

    spec, size, epochs = get(cfg.cache_backbone), cfg.image_size, cfg.naive_epochs
    head_cfg = OmegaConf.load(cli.CONF / "config.yaml").head
    train = OmegaConf.load(cli.CONF / "train" / "frozen.yaml")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (cfg.naive_images, size, size, 3)).astype(np.float32)
    y = keras.utils.to_categorical(rng.integers(0, 3, len(x)), 3)
    seed_run(0)
    naive = assemble(pooled_extractor(build(spec, size, None), spec, size), head_layers(3, head_cfg))
    naive.compile("adam", "categorical_crossentropy")
    started = time.perf_counter()
    naive.fit(x, y, batch_size=train.batch_size, epochs=epochs, verbose=0)
    naive_s = time.perf_counter() - started
    seed_run(0)
    extractor = pooled_extractor(build(spec, size, None), spec, size)
    started = time.perf_counter()
    features = extract(extractor, x, train.batch_size, "features")  # the frozen mode's own extraction
    head = head_on_features(features.shape[1], head_layers(3, head_cfg))
    compile_head(head, train, len(x))
    batches = feature_batches(features, y, train.batch_size, seed=0, epochs=epochs)
    steps = steps_per_epoch(len(x), train.batch_size)
    head.fit(batches, epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0)
    cached_s = time.perf_counter() - started
    return {
        "backbone": spec.name,
        "epochs": epochs,
        "images": len(x),
        "naive_s": naive_s,
        "cached_s": cached_s,
        "speedup": naive_s / cached_s,
    }


def fastest_ips(speed: dict) -> float:
    return max(speed["extraction_ips"], speed.get("onnxruntime_ips") or 0.0)


def engine_ips(speed: dict, engine: str) -> float | None:
    """The raw forward throughput of the engine the sweep extracted this backbone with."""
    return speed["extraction_ips"] if engine == "tf" else speed.get(f"{engine}_ips")


def efficiency_rows(speeds: list[dict], sweep: dict, peak_flops: float) -> list[dict]:
    """Per backbone: the FLOP ceiling (images/s at the machine's measured fp32 peak), the fastest engine's
    share of it, and how the sweep's extraction compares with raw forward passes: end to end (what the
    target judges), its steady batches against the same engine (does the pipeline keep the engine
    busy?), the seconds the steady rate does not explain (tracing, first call, export), and the seconds
    the network took to be ready before (build, BatchNorm recalibration, save)."""
    rows = []
    for s in speeds:
        name, n = s["backbone"], sweep["n_images"]
        ceiling = peak_flops / (s["gflop_per_image"] * 1e9)
        extraction, steady = sweep["extraction_s"].get(name), sweep["steady_ips"].get(name)
        same_engine = engine_ips(s, sweep["engine"].get(name, "tf"))
        rows.append({
            "backbone": name,
            "gflop_per_image": s["gflop_per_image"],
            "ceiling_ips": ceiling,
            "fastest_ips": fastest_ips(s),
            "fraction_of_ceiling": fastest_ips(s) / ceiling,
            "end_to_end_ips": n / extraction if extraction else None,
            "pipeline_efficiency": n / extraction / fastest_ips(s) if extraction else None,
            "steady_over_same_engine": steady / same_engine if steady and same_engine else None,
            "one_off_s": extraction - n / steady if extraction and steady else None,
            "ready_s": sweep["ready_s"].get(name),
        })
    return rows


def targets(
    cfg: DictConfig, speeds: list[dict], cache: dict, sweep: dict, naive: dict, efficiency: list[dict],
    bench_s: float,
) -> list[dict]:
    """Every target of conf/bench.yaml with its measured value and whether it was met."""
    forward_s = sum(sweep["n_images"] / fastest_ips(s) for s in speeds)
    t = cfg.targets
    found = [
        ("default sweep, empty caches (s)", sweep["cold"]["wall_s"], "<=", t.sweep_s),
        (
            "sweep / pure forward of the backbones",
            sweep["cold"]["wall_s"] / forward_s,
            "<=",
            t.sweep_over_forward,
        ),
        ("further seed, one sweep cell (s, slowest)", sweep["further_seed_cell_s"], "<=", t.further_seed_s),
        (
            "further seed as its own process, minus start-up (s)",
            sweep["separate_seed_s"] - sweep["interpreter_s"],
            "<=",
            t.further_seed_s,
        ),
        ("make sweep again when complete (s)", sweep["complete"]["wall_s"], "<=", t.complete_sweep_s),
        ("cached frozen mode vs the naive way (x)", naive["speedup"], ">=", t.naive_speedup),
        ("peak memory of the default sweep (GB)", sweep["cold"]["peak_memory_gb"], "<=", t.peak_memory_gb),
        (
            "growth of the sweep's process over its repeated passes (MB)",
            memory_growth_mb(sweep["memory_by_seed_mb"]),
            "<=",
            t.memory_growth_mb,
        ),
        ("a further seed on the warm cache vs a cold run (x)", cache["speedup"], ">=", cfg.min_cache_speedup),
        ("make bench itself (s)", bench_s, "<=", t.bench_s),
    ]
    for row in efficiency:  # end to end over the fastest engine's raw forward, as the issue defines it
        if row["pipeline_efficiency"] is not None:
            name, value = f"pipeline efficiency, {row['backbone']}", row["pipeline_efficiency"]
            found.append((name, value, ">=", t.pipeline_efficiency))
    rows = []
    for name, value, op, target in found:
        met = value is not None and (value <= target if op == "<=" else value >= target)
        rows.append({"target": name, "measured": value, "goal": f"{op} {target}", "met": met})
    ceiling_s = sum(sweep["n_images"] / row["ceiling_ips"] for row in efficiency)
    return rows + [
        {"target": f"pure forward, {len(speeds)} backbones (s)", "measured": forward_s, "goal": "",
         "met": None},
        {"target": "the same at the FLOP ceiling (s)", "measured": ceiling_s, "goal": "", "met": None},
    ]


def number(value: float | None, spec: str = ".1f") -> str:
    return "—" if value is None else format(value, spec)


def sweep_split(sweep: dict, efficiency: list[dict]) -> str:
    """The cold sweep's wall time in four parts that add up to it, from its own cells' records."""
    rows = [row for row in efficiency if row["one_off_s"] is not None]
    forward = sum(sweep["n_images"] / row["end_to_end_ips"] - row["one_off_s"] for row in rows)
    one_off = sum(row["one_off_s"] for row in rows)
    ready = sum(row["ready_s"] or 0.0 for row in rows)
    rest = sweep["cold"]["wall_s"] - forward - one_off - ready
    return (
        f"Where the cold sweep's {sweep['cold']['wall_s']:.0f} s went: forward passes at the speed of the "
        f"extraction's steady batches {forward:.0f} s, their one-off seconds {one_off:.0f} s, networks "
        f"made ready (build, BatchNorm recalibration, save) {ready:.0f} s, everything else {rest:.0f} s "
        "(head training, evaluation and figures of every cell, Grad-CAM and the report after the last "
        "cell, start-up, data generation, Hydra)."
    )


def setting(cfg: DictConfig) -> dict:
    """What the numbers were measured with: TensorFlow's thread pools (0: its default, every core; the
    sweep's cells use the same, runtime.threads=auto with one cell at a time) and the library versions."""
    from importlib.metadata import version
    from importlib.util import find_spec

    import tensorflow as tf

    from benchmark.runs.provenance import versions

    engines = ("onnxruntime", "openvino", "tf2onnx")
    found = versions() | {package: version(package) for package in engines if find_spec(package)}
    return {
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "peak_matrix": cfg.peak_matrix,
        "versions": found,
    }


def markdown(
    speeds: list[dict],
    cache: dict,
    sweep: dict,
    naive: dict,
    rows: list[dict],
    measured: dict,
) -> str:
    machine, used, efficiency = measured["machine"], measured["setting"], measured["efficiency"]
    gpus = machine["gpus"] or "none"
    features = machine["cpu_features"] or "vector extensions unknown"
    lines = [
        f"# Benchmark ({machine['cpu']}, {features}, {machine['cpu_count']} cores, GPUs: {gpus})",
        "",
        f"Input {speeds[0]['image_size']} px, random-init weights (speed does not depend on them). "
        f"TensorFlow threads: intra-op {used['intra_op_threads']}, inter-op {used['inter_op_threads']} "
        "(0: TensorFlow's default, every core). Versions: "
        + ", ".join(f"{name} {v}" for name, v in used["versions"].items())
        + ".",
        "",
        "| backbone | params (M) | raw forward TF (img/s) | ONNX Runtime (img/s) | ONNX export (s) "
        "| export and session (s) | ONNX Runtime pays from (128-px images) | latency batch 1, TF (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in speeds:
        lines.append(
            f"| {s['backbone']} | {s['params_m']:.1f} | {s['extraction_ips']:.1f} "
            f"| {number(s.get('onnxruntime_ips'))} | {number(s.get('onnx_export_s'))} "
            f"| {number(s.get('onnxruntime_ready_s'))} | {number(s.get('break_even_images'), '.0f')} "
            f"| {s['latency_ms']:.1f} |"
        )
    lines += [
        "",
        f"Measured fp32 peak: {measured['peak_gflops']:.0f} GFLOP/s (TensorFlow's matrix product, "
        f"{used['peak_matrix']}² matrices). FLOP ceiling = that peak over the backbone's operations per "
        "image (TensorFlow's profiler; a multiply-add counts two). Pipeline efficiency = the sweep's "
        "extraction end to end over the fastest engine's raw forward (the target); steady = the same "
        "extraction's full batches after the first over the raw forward of the engine it ran; one-off = "
        "the extraction's seconds its steady rate does not explain (tracing, first call, any export).",
        "",
        "| backbone | GFLOP/image | FLOP ceiling (img/s) | fastest engine raw (img/s) | fraction of ceiling "
        "| end to end in the sweep (img/s) | pipeline efficiency | steady / same engine raw | one-off (s) "
        "| network ready before (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in efficiency:
        lines.append(
            f"| {row['backbone']} | {row['gflop_per_image']:.2f} | {row['ceiling_ips']:.1f} "
            f"| {row['fastest_ips']:.1f} | {row['fraction_of_ceiling']:.2f} "
            f"| {number(row['end_to_end_ips'])} | {number(row['pipeline_efficiency'], '.2f')} "
            f"| {number(row['steady_over_same_engine'], '.2f')} | {number(row['one_off_s'])} "
            f"| {number(row['ready_s'])} |"
        )
    lines += ["", sweep_split(sweep, efficiency), ""]
    lines += [bench_split(measured["bench_stages_s"], measured["bench_s"]), ""]
    lines += [
        f"The sweep extracted with: {', '.join(sweep['engines'])} (runtime.engine=auto). "
        f"Default sweep from empty caches: {sweep['cold']['wall_s']:.0f} s, peak memory "
        f"{sweep['cold']['peak_memory_gb']:.2f} GB, results {sweep['results_gb']:.2f} GB; "
        f"again when complete: {sweep['complete']['wall_s']:.1f} s. "
        f"Naive vs cached ({naive['backbone']}, {naive['images']} images, {naive['epochs']} epochs): "
        f"{naive['naive_s']:.1f} s vs {naive['cached_s']:.1f} s. Feature cache: the sweep's first "
        f"{naive['backbone']} cell took {cache['cold_run_s']:.1f} s cold, its next seed "
        f"{cache['warm_run_s']:.1f} s. Each cell's peak resident memory in the sweep's process, by pass "
        "over the backbones: "
        + ", ".join(f"seed {seed} {min(mb) / 1024:.2f}-{max(mb) / 1024:.2f} GB"
                    for seed, mb in sweep["memory_by_seed_mb"].items())
        + ".",
        "",
        "| target | measured | goal | |",
        "|---|---|---|---|",
    ]
    for row in rows:
        value = "—" if row["measured"] is None else f"{row['measured']:.2f}"
        verdict = "" if row["met"] is None else ("**pass**" if row["met"] else "**short**")
        lines.append(f"| {row['target']} | {value} | {row['goal']} | {verdict} |")
    return "\n".join(lines + [""])


def seconds_since_start() -> float:
    """Wall seconds since this process was created: the bench's own time, its imports included."""
    import psutil

    return time.time() - psutil.Process().create_time()


def bench_split(stages: dict[str, float], total_s: float) -> str:
    """The bench's own wall time in parts that add up to it (the issue: <= 15 minutes from a fresh clone)."""
    parts = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in stages.items())
    rest = total_s - sum(stages.values())
    return (
        f"This bench took {total_s:.0f} s ({total_s / 60:.1f} min): {parts}, "
        f"start-up and the rest {rest:.0f} s."
    )


@contextmanager
def stage(stages: dict[str, float], name: str) -> Iterator[None]:
    """Record the block's wall seconds as `stages[name]`."""
    started = time.perf_counter()
    yield
    stages[name] = time.perf_counter() - started


def work(cfg: DictConfig) -> None:
    from backbones.registry import names
    from benchmark.runs.provenance import machine

    stages: dict[str, float] = {}
    with stage(stages, "fp32 peak"):
        peak_flops = fp32_peak(cfg)
    log.info("fp32 peak %.0f GFLOP/s", peak_flops / 1e9)
    speeds = []
    with stage(stages, "each backbone's raw forwards, latency, FLOPs and ONNX export"):
        for name in cfg.backbones or names():
            speeds.append(backbone_speed(name, cfg) | {"image_size": cfg.image_size})
            log.info(
                "%-18s %7.1f img/s  %6.1f ms", name, speeds[-1]["extraction_ips"], speeds[-1]["latency_ms"]
            )
    with stage(stages, "naive vs cached"):
        naive = naive_vs_cached(cfg)
    log.info("naive %.1f s vs cached %.1f s", naive["naive_s"], naive["cached_s"])
    with stage(stages, "the default sweep cold, again complete, and a further seed"):
        sweep = default_sweep(cfg)
    cache = cache_speedup(cfg, sweep.pop("runs"))
    log.info(
        "default sweep %.0f s cold, %.1f s complete", sweep["cold"]["wall_s"], sweep["complete"]["wall_s"]
    )
    efficiency = efficiency_rows(speeds, sweep, peak_flops)
    measured = {
        "machine": machine(),
        "setting": setting(cfg),
        "peak_gflops": peak_flops / 1e9,
        "efficiency": efficiency,
        "bench_stages_s": stages,
        "bench_s": seconds_since_start(),  # what is left (the two files below) takes milliseconds
    }
    rows = targets(cfg, speeds, cache, sweep, naive, efficiency, measured["bench_s"])
    report = markdown(speeds, cache, sweep, naive, rows, measured)
    write_text(Path(cfg.out_dir) / "bench.md", report)
    write_json(
        Path(cfg.out_dir) / "bench.json",
        {"backbones": speeds, "cache": cache, "sweep": sweep, "naive": naive, "targets": rows, **measured},
    )
    print(report)


if __name__ == "__main__":
    cli.main("bench", work)
