"""What the numbers were measured on, and how: CPU facts (py-cpuinfo), stated peaks, peak memory, timing."""

from __future__ import annotations

import os
import pathlib
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

DTYPES = {"fp32": jnp.float32, "bf16": jnp.bfloat16}
VECTOR_FLAGS = ("avx", "amx", "fma")


def cpu_info() -> dict[str, Any]:
  """Model, vendor, family/model numbers, vector flags, nominal clock and usable cores, from py-cpuinfo (which
  reads /proc/cpuinfo, sysctl or CPUID, whichever the platform has)."""
  try:
    import cpuinfo  # pylint: disable=import-outside-toplevel (the benchmark's dependency, not the library's)
    raw = cpuinfo.get_cpu_info()
  except ImportError:  # the GPU machine of experiments/benchmarks/gpu_suite.py may lack it
    raw = {}
  hz = raw.get("hz_advertised") or raw.get("hz_actual") or [0, 0]
  info: dict[str, Any] = {"model_name": raw.get("brand_raw") or platform.processor() or platform.machine(),
                          "vendor": raw.get("vendor_id_raw", ""), "family": raw.get("family"),
                          "model": raw.get("model"), "mhz": hz[0] / 1e6 if hz[0] else None,
                          "flags": [f for f in raw.get("flags", []) if f.startswith(VECTOR_FLAGS)]}
  try:
    info["cores"] = len(os.sched_getaffinity(0))
  except AttributeError:
    info["cores"] = os.cpu_count() or 1
  info["microarchitecture"] = microarchitecture(info)
  return info


def microarchitecture(info: Mapping[str, Any]) -> str:
  """A best guess from the family/model numbers; only the cases that change the FLOP/cycle figure matter."""
  vendor, family, model = info.get("vendor"), info.get("family"), info.get("model")
  if vendor == "AuthenticAMD" and family == 25:
    return "Zen 4" if "avx512f" in info.get("flags", []) else "Zen 3"
  if vendor == "AuthenticAMD" and family == 26:
    return "Zen 5"
  if vendor == "GenuineIntel" and family == 6:
    return {143: "Sapphire Rapids", 207: "Emerald Rapids", 106: "Ice Lake-SP", 85: "Skylake/Cascade Lake-SP"}.get(
        model, f"Intel family 6 model {model}")
  return "unknown"


def stated_peak_gflops(info: Mapping[str, Any], precision: str) -> tuple[float, str]:
  """Theoretical peak of the whole CPU for `precision` and how it was derived (one line)."""
  flags = set(info.get("flags", []))
  arch = info.get("microarchitecture", "unknown")
  if "avx512f" in flags and arch in ("Zen 4",):
    fp32, why = 32, "two 256-bit FMA pipes (AVX-512 is split into 256-bit halves): 2 x 8 lanes x 2"
  elif "avx512f" in flags:
    fp32, why = 64, "two 512-bit FMA units: 2 x 16 lanes x 2"
  elif "avx2" in flags and "fma" in flags:
    fp32, why = 32, "two 256-bit FMA units: 2 x 8 lanes x 2"
  else:
    fp32, why = 8, "no FMA vector units recognised: 4 lanes x 2"
  per_cycle, what = fp32, f"fp32 FLOP/cycle/core ({arch}: {why})"
  if precision == "bf16":
    if "amx_bf16" in flags:
      per_cycle, what = 1024, "bf16 FLOP/cycle/core (AMX tile multiply)"
    elif "avx512_bf16" in flags:
      per_cycle, what = 2 * fp32, "bf16 FLOP/cycle/core (AVX512-BF16 dot products: twice the fp32 rate)"
    else:
      what += "; no bf16 instructions, so bf16 math runs at the fp32 rate at best"
  cores, ghz = info.get("cores", 1), (info.get("mhz") or 0.0) / 1000.0
  peak = cores * per_cycle * ghz
  return peak, (f"{cores} cores x {per_cycle} {what} x {ghz:.2f} GHz (nominal clock from py-cpuinfo; turbo "
                f"is not visible) = {peak:.0f} GFLOP/s")


def machine_info() -> dict[str, Any]:
  """What the numbers were measured on: CPU, accelerator, library versions, XLA flags."""
  info: dict[str, Any] = {"cpu": cpu_info(), "python": platform.python_version(), "jax": jax.__version__,
                          "platform": platform.platform(), "jax_backend": jax.default_backend(),
                          "jax_devices": [str(d) for d in jax.devices()],
                          "xla_flags": os.environ.get("XLA_FLAGS", "")}
  try:
    import jaxlib  # noqa: PLC0415 (version only)
    info["jaxlib"] = jaxlib.__version__
  except ImportError:
    pass
  try:
    import torch  # noqa: PLC0415 (optional: the reference is a benchmark-only extra)
    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    info["torch_mkldnn"] = bool(torch.backends.mkldnn.is_available())
  except ImportError:
    info["torch"] = None
  if jax.default_backend() == "gpu":
    info["gpu"] = jax.devices()[0].device_kind
  return info


def describe_machine(info: Mapping[str, Any]) -> str:
  cpu = info["cpu"]
  text = f"{cpu['model_name']} ({cpu['microarchitecture']}), {cpu['cores']} cores"
  if cpu.get("mhz"):
    text += f" at {cpu['mhz'] / 1000:.2f} GHz nominal"
  if info.get("gpu"):
    text = f"{info['gpu']}; host {text}"
  return text


def measure_gemm_gflops(precision: str, n: int = 2048, repeats: int = 5) -> float:
  """The rate of an n x n x n matrix product in JAX: the practical ceiling for conv-as-GEMM work here."""
  dtype = DTYPES[precision]
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype)
  f = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
  timing = time_calls(lambda: f(a, a), warmup=1, repeats=repeats)
  return 2.0 * n ** 3 / timing["min_s"] / 1e9



# ----------------------------------------------------------------------------------------------------------------
# Memory


def reset_peak_rss() -> bool:
  """Resets the kernel's peak-RSS mark of this process (Linux >= 4.0); False where that is not possible."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def status_bytes(field: str) -> int | None:
  try:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
      if line.startswith(field + ":"):
        return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  return None


class PeakMemory:
  """Peak memory of the code inside the `with`: host RSS (VmHWM after a reset) or, on GPU, the device's
  peak_bytes_in_use. The GPU allocator's peak cannot be reset, so isolate measurements in processes there."""

  def __init__(self, *, gpu: bool = False):
    self.gpu = gpu
    self.result: dict[str, Any] = {}

  def __enter__(self) -> PeakMemory:
    self.exact = reset_peak_rss()
    self.rss_before = status_bytes("VmRSS")
    return self

  def __exit__(self, *exc) -> None:
    peak = status_bytes("VmHWM") if self.exact else None
    if peak is None:
      import resource  # noqa: PLC0415 (Unix only)
      peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # lifetime peak: an upper bound
    self.result = {"peak_rss_bytes": peak, "rss_before_bytes": self.rss_before, "peak_rss_exact": self.exact}
    if self.gpu:
      stats = jax.devices()[0].memory_stats() or {}
      self.result["device_peak_bytes"] = stats.get("peak_bytes_in_use")


# ----------------------------------------------------------------------------------------------------------------
# Timing


def time_calls(fn: Callable[[], Any], *, warmup: int, repeats: int) -> dict[str, Any]:
  """Median/min/max wall seconds (and process CPU seconds) of `repeats` calls of `fn` after `warmup` calls; the
  result of every call is waited for (`jax.block_until_ready`; torch work is synchronous on CPU)."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  walls, cpus = [], []
  for _ in range(max(1, repeats)):
    t0, c0 = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn())
    walls.append(time.perf_counter() - t0)
    cpus.append(time.process_time() - c0)
  return {"median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls), "times_s": walls,
          "cpu_median_s": statistics.median(cpus)}

