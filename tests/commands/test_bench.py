"""`make bench`'s arithmetic: operations per image counted on a real Keras graph, and the efficiency table
built from measured throughputs (the timings themselves are measured by `make bench`, never asserted)."""

import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from omegaconf import OmegaConf

from benchmark.bench import (
    EXTRA_SEED,
    bench_split,
    efficiency_rows,
    float_ops_per_image,
    memory_by_seed,
    memory_growth_mb,
    onnxruntime_speed,
    sweep_split,
)


def test_float_ops_of_a_convolution_are_two_per_multiply_add():
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    model = keras.Model(inputs, keras.layers.Flatten()(outputs))
    multiply_adds = 8 * 8 * (3 * 3 * 3) * 4  # output positions x kernel taps x input channels x filters
    assert float_ops_per_image(model) == 2 * multiply_adds


def test_efficiency_rows_compare_the_sweep_with_raw_forwards_and_the_flop_ceiling():
    speeds = [{"backbone": "b", "gflop_per_image": 2.0, "extraction_ips": 50.0, "onnxruntime_ips": 80.0}]
    sweep = {
        "n_images": 600,
        "extraction_s": {"b": 15.0},  # 40 img/s end to end
        "steady_ips": {"b": 48.0},  # its full batches ran at 48 img/s ...
        "engine": {"b": "tf"},  # ... on TensorFlow, whose raw forward is 50 img/s
        "ready_s": {"b": 4.0},
    }
    (row,) = efficiency_rows(speeds, sweep, peak_flops=200e9)
    assert row["ceiling_ips"] == pytest.approx(100.0)  # 200 GFLOP/s over 2 GFLOP per image
    assert row["fastest_ips"] == 80.0 and row["fraction_of_ceiling"] == pytest.approx(0.8)
    assert row["end_to_end_ips"] == pytest.approx(40.0)
    assert row["pipeline_efficiency"] == pytest.approx(0.5)  # against the fastest engine, ONNX Runtime
    assert row["steady_over_same_engine"] == pytest.approx(0.96)  # against TensorFlow, the engine used
    assert row["one_off_s"] == pytest.approx(15.0 - 600 / 48)
    assert row["ready_s"] == 4.0


def test_the_sweep_split_adds_up_to_its_wall_time():
    row = {"end_to_end_ips": 40.0, "one_off_s": 3.0, "ready_s": 4.0}  # 600 images: 15 s extraction
    text = sweep_split({"n_images": 600, "cold": {"wall_s": 30.0}}, [row])
    assert "steady batches 12 s, their one-off seconds 3 s" in text  # 15 s = 12 s steady + 3 s one-off
    assert "(build, BatchNorm recalibration, save) 4 s, everything else 11 s" in text


def test_a_backbone_the_sweep_did_not_extract_has_no_sweep_figures():
    speeds = [{"backbone": "b", "gflop_per_image": 1.0, "extraction_ips": 10.0}]
    sweep = {"n_images": 600, "extraction_s": {}, "steady_ips": {}, "engine": {}, "ready_s": {}}
    (row,) = efficiency_rows(speeds, sweep, peak_flops=100e9)
    assert row["pipeline_efficiency"] is None and row["one_off_s"] is None and row["ceiling_ips"] == 100.0


def test_the_bench_split_adds_up_to_its_own_time():
    text = bench_split({"fp32 peak": 5.0, "naive vs cached": 70.0}, total_s=90.0)
    assert text.startswith("This bench took 90 s (1.5 min): fp32 peak 5 s, naive vs cached 70 s")
    assert text.endswith("start-up and the rest 15 s.")


def test_the_bench_counts_its_time_from_its_process_start():
    """The seconds before the bench's own code runs (the interpreter, the imports) are counted too."""
    code = "import time; time.sleep(1.5); from benchmark.bench import seconds_since_start as s; print(s())"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 1.5 <= float(found.stdout) < 60


def cells(seed: int, peaks_mb: list[float]) -> list[dict]:
    return [{"seed": seed, "backbone": f"b{i}", "peak_memory_mb": mb} for i, mb in enumerate(peaks_mb)]


def test_the_sweep_process_grows_by_its_last_pass_over_its_second():
    """The first pass raises the high-water mark once per network (left out); the separate process's
    further seed and the ensemble's row (no peak of its own) are not cells of the sweep's process."""
    runs = [*cells(0, [1252, 1784, 1687, 1967]), *cells(1, [1970, 1971, 1969]), *cells(2, [1971, 1972, 1846]),
            *cells(EXTRA_SEED, [906]), {"seed": 0, "backbone": "ensemble"}]
    passes = memory_by_seed(runs)
    assert list(passes) == [0, 1, 2] and sorted(passes[0]) == [1252, 1687, 1784, 1967]
    assert memory_growth_mb(passes) == 1
    leaking = memory_by_seed([*cells(0, [1000]), *cells(1, [1100, 1150]), *cells(2, [1200, 1250])])
    assert memory_growth_mb(leaking) == 100
    assert memory_growth_mb(memory_by_seed(cells(0, [1000]) + cells(1, [1000]))) is None  # no repeated pass


def test_onnx_runtime_speed_times_the_export_within_the_export_and_session():
    """Exported and opened as a run's engine is: the export alone and the export with the session are
    timed apart (their values are `make bench`'s, only their order is asserted)."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    batch = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    found = onnxruntime_speed(model, batch, 2, OmegaConf.create({"batch_size": 4, "image_size": 16}), 1e-9)
    assert 0 < found["onnx_export_s"] < found["onnxruntime_ready_s"]
    assert found["onnxruntime_ips"] > 0 and found["break_even_images"] > 0


def test_a_forked_childs_shared_pages_are_counted_once():
    """Summed resident sizes counted a fork's copy-on-write pages twice (a sweep read 4.04 GB, not 2.2)."""
    import psutil

    from benchmark.bench import tree_memory

    holder = subprocess.Popen([sys.executable, "-c", (
        "import os, time, numpy as np\n"
        "block = np.ones(300 * 2**20 // 8)\n"  # 300 MB, touched
        "child = os.fork()\n"
        "if child:\n"
        "    print('ready', flush=True)\n"  # the parent alone: two prints could share a line
        "time.sleep(30)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        process = psutil.Process(holder.pid)
        resident = sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])
        assert resident > 550 * 2**20  # the block, counted in both
        assert tree_memory(process) < 450 * 2**20  # counted once
    finally:
        for child in psutil.Process(holder.pid).children(recursive=True):
            child.kill()
        holder.kill()
