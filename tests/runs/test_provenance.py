"""What a run and a bench record of the machine: enough to tell apart CPUs that share a model name."""

import platform

import pytest

from benchmark.runs.provenance import cpu_flags, vector_extensions


def test_vector_extensions_name_what_sets_the_convolution_speed():
    avx2_only = {"sse4_2", "avx", "avx2", "fma", "aes"}
    avx512 = avx2_only | {"avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "vaes"}
    assert vector_extensions(avx2_only) == "AVX2 FMA"
    assert vector_extensions(avx512) == "AVX2 FMA AVX-512 AVX-512-VNNI AVX-512-BF16"
    assert vector_extensions(avx512 | {"amx_tile", "amx_bf16"}).endswith("AVX-512-BF16 AMX")
    assert vector_extensions({"fp", "asimd", "sve"}) == "NEON SVE"
    assert vector_extensions({"sse2"}) == ""


@pytest.mark.skipif(platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64", "arm64"),
                    reason="reads /proc/cpuinfo's x86 flags or Arm features")
def test_this_machines_flags_are_read_from_its_cpuinfo():
    flags = cpu_flags()
    assert len(flags) > 5 and ("sse2" in flags or "asimd" in flags or "fp" in flags)  # x86 or Arm


def test_the_leaderboards_machine_line_names_the_extensions_where_the_run_recorded_them():
    from benchmark.report.document import machine_name
    from benchmark.report.load import Run

    def named(machine: dict) -> str:
        return machine_name(Run("r", {}, {"machine": machine}, None, None))

    epyc = {"cpu": "AMD EPYC", "cpu_count": 2, "gpus": []}
    with_features = epyc | {"cpu_features": "AVX2 FMA AVX-512"}
    assert named(with_features) == "AMD EPYC, AVX2 FMA AVX-512 (2 cores), no GPU"
    assert named(epyc) == "AMD EPYC (2 cores), no GPU"  # a run made before they were recorded
