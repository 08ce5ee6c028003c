"""Benchmark harness (issue #4): nst_jax's Gatys iteration against a PyTorch reference of the same work.

What is timed, per image size and precision:

* **eval**: one evaluation of the Gatys loss *and its gradient with respect to the image* (VGG forward to the
  deepest loss layer, content/style/TV losses, backward). This is the comparable unit: every optimizer needs one
  per iteration, L-BFGS sometimes several (its line search), and two L-BFGS implementations need different numbers
  of them. nst_jax's eval is `jax.value_and_grad` of the loss that `nst_jax.stylize` optimises
  (`gatys.make_loss_terms`); the reference is the same loss written the way a PyTorch user would (eager autograd,
  channels_last, oneDNN, `torch.autocast` for bf16) and checked to give the same value and gradient
  (`check_reference`).
* **step**: one optimizer iteration. nst_jax: `optim.make_chunk_runner` (the jitted `fori_loop` that
  `stylize` runs), `steps` iterations per call, time / steps. torch: `torch.optim` (L-BFGS with a strong-Wolfe
  line search, `max_iter=steps` in one `step` call; Adam/SGD/... one `step` per iteration). Function evaluations
  per step are reported beside it, because they differ between the two L-BFGS implementations.
* compile time (lower + compile, separately), peak memory (RSS on CPU, reset before every measurement through
  `/proc/self/clear_refs`; device `peak_bytes_in_use` on GPU) and XLA's own buffer assignment (temp bytes).

Times are the median/min/max of `repeats` calls after `warmup` calls, wall clock, with `jax.block_until_ready`;
process CPU time is recorded beside them (on a loaded machine it is the steadier number of the two).

FLOP model (`flop_breakdown`), per eval, for an (H, W) image and the VGG convolutions up to the deepest layer any
loss uses (every conv is 3x3, stride 1, 'same'; h, w the conv's resolution):

  conv forward          2 h w 9 Cin Cout                     (per conv)
  conv backward         2 h w 9 Cin Cout                     (input gradient only: we differentiate with respect
                                                              to the image, never the weights; conv1_1 included)
  Gram forward          2 M C^2                              (per style layer, M = h w positions)
  Gram backward         2 M C^2                              (the one product F (G + G^T) of `losses.gram_product`;
                                                              plain autodiff, torch's included, does two)

Bias, ReLU, pooling, masks and the loss reductions are O(elements) and left out (< 1% of the total for VGG).
Convolutions are counted with their zero padding, the usual convention; `count_padding=False` counts only the
taps inside the image, which is what XLA's cost analysis counts (the test holds the two within 1%). Achieved
GFLOP/s are this count divided by time: an implementation that needs fewer multiplications for the same result
(Winograd) would show a higher *effective* rate, one that does more (torch's two-product Gram backward) a
slightly lower one.

Stated peak (`stated_peak_gflops`): cores x FLOP/cycle/core x clock, FLOP/cycle from the vector units that
/proc/cpuinfo's vendor, family and flags imply, the clock from its `cpu MHz` (the nominal clock; turbo is not
visible, in a VM least of all, so a good kernel can pass 100%). The harness also measures a large matrix product,
the practical ceiling of both frameworks on the machine.

AdaIN (`--adain_sizes`, e.g. 512,1024,3840x2160): the latency of one `nst_jax.adain.stylize` call, content and
style of that size, end to end (host image in, host image out: style and content encoding, AdaIN, decoding;
images above its 2-megapixel default go through thumbnail-normalised tiles, as the CLI does), with the first call
(compilation included) apart. Its FLOPs are the encoder's convolutions up to relu4_1 at the content's size, twice
(the decoder mirrors them), plus the style's encoding.

The tiled high-resolution loss (`nst_jax.highres`, `--tile_size N`) is timed per size as one eval of the whole
image through N-px tiles, per megapixel and against the untiled eval of the same size (the halo's overhead).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import importlib.util
import json
import multiprocessing
import os
import pathlib
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import demo, optim
from nst_jax.io import image_io
from nst_jax.methods import gatys
from nst_jax.models import vgg
from nst_jax.errors import NSTError
from nst_jax.models.preprocessing import CAFFE_VGG
from nst_jax.weights.format import VGGWeights
from nst_jax.weights.store import resolve_weights

PRECISIONS = ("fp32", "bf16")
_DTYPES = {"fp32": jnp.float32, "bf16": jnp.bfloat16}
DEFAULT_WEIGHTS = {"vgg16": "hed-vgg16", "vgg19": "vgg19-torchvision"}
SKIPPED = {
    "adain": "AdaIN single forward passes (e.g. 512/1024/4K): run with --adain_sizes 512,1024,3840x2160",
    "tiled": "tiled high-resolution loss per megapixel: run with --tile_size N (N > 0)",
}


# ----------------------------------------------------------------------------------------------------------------
# FLOP model


def conv_plan(arch: str, shape: tuple[int, int], layers: Sequence[str]) -> list[tuple[str, int, int, int, int]]:
  """(name, h, w, Cin, Cout) of every convolution up to the deepest of `layers`, at its input resolution."""
  last = vgg.deepest_layer(arch, layers)
  shapes = vgg.conv_shapes(arch)
  h, w = shape
  plan = []
  for name in vgg.layer_names(arch):
    if name.startswith("conv"):
      kh, kw, cin, cout = shapes[name][0]
      plan.append((name, h, w, cin, cout))
    elif name.startswith("pool"):
      h, w = h // 2, w // 2
    if name == last:
      break
  return plan


def layer_shape(arch: str, shape: tuple[int, int], layer: str) -> tuple[int, int, int]:
  """(h, w, C) of `layer`'s output for an (H, W) input (pools floor odd sizes, as `vgg.pool`)."""
  h, w = shape
  channels = 3
  shapes = vgg.conv_shapes(arch)
  for name in vgg.layer_names(arch):
    if name.startswith("conv"):
      channels = shapes[name][0][3]
    elif name.startswith("pool"):
      h, w = h // 2, w // 2
    if name == layer:
      return h, w, channels
  raise ValueError(f"{arch} has no layer {layer!r}")


def flop_breakdown(arch: str, shape: tuple[int, int], *, content_layers: Sequence[str],
                   style_layers: Sequence[str], count_padding: bool = True) -> dict[str, float]:
  """FLOPs of one Gatys eval (loss + gradient with respect to the image) by part; see the module docstring.

  `count_padding`: count every conv as 2 h w 9 Cin Cout, the usual convention (and the work of a kernel that
  multiplies the zero padding); False counts only the taps that land inside the image, (3h - 2)(3w - 2) instead of
  9 h w per channel pair, which is what XLA's cost analysis counts.
  """
  def taps(h: int, w: int) -> int:
    return 9 * h * w if count_padding else (3 * h - 2) * (3 * w - 2)

  convs = sum(2.0 * taps(h, w) * cin * cout for _, h, w, cin, cout in
              conv_plan(arch, shape, tuple(content_layers) + tuple(style_layers)))
  grams = 0.0
  for name in style_layers:
    h, w, c = layer_shape(arch, shape, name)
    grams += 2.0 * h * w * c * c
  return {"conv_forward": convs, "conv_backward": convs, "gram_forward": grams, "gram_backward": grams}


def gatys_flops(arch: str, shape: tuple[int, int], *, content_layers: Sequence[str] = gatys.CONTENT_LAYERS,
                style_layers: Sequence[str] = gatys.STYLE_LAYERS) -> float:
  """Total FLOPs of one Gatys eval of an (H, W) image (`flop_breakdown` summed)."""
  return sum(flop_breakdown(arch, shape, content_layers=content_layers, style_layers=style_layers).values())


# ----------------------------------------------------------------------------------------------------------------
# The machine


def cpu_info() -> dict[str, Any]:
  """Model, vendor, family/model numbers, vector flags, nominal clock and usable cores, from /proc/cpuinfo."""
  info: dict[str, Any] = {"model_name": platform.processor() or platform.machine(), "vendor": "", "family": None,
                          "model": None, "mhz": None, "flags": []}
  try:
    text = pathlib.Path("/proc/cpuinfo").read_text()
  except OSError:
    text = ""
  first = text.split("\n\n", 1)[0]
  for line in first.splitlines():
    key, _, value = (part.strip() for part in line.partition(":"))
    if key == "model name":
      info["model_name"] = value
    elif key == "vendor_id":
      info["vendor"] = value
    elif key == "cpu family":
      info["family"] = int(value)
    elif key == "model":
      info["model"] = int(value)
    elif key == "cpu MHz":
      info["mhz"] = float(value)
    elif key == "flags":
      info["flags"] = [f for f in value.split() if f.startswith(("avx", "amx", "fma"))]
  try:
    info["cores"] = len(os.sched_getaffinity(0))
  except AttributeError:
    info["cores"] = os.cpu_count() or 1
  info["microarchitecture"] = _microarchitecture(info)
  return info


def _microarchitecture(info: Mapping[str, Any]) -> str:
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
  return peak, (f"{cores} cores x {per_cycle} {what} x {ghz:.2f} GHz (nominal clock from /proc/cpuinfo; turbo "
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
  dtype = _DTYPES[precision]
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


def _status_bytes(field: str) -> int | None:
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
    self.rss_before = _status_bytes("VmRSS")
    return self

  def __exit__(self, *exc) -> None:
    peak = _status_bytes("VmHWM") if self.exact else None
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


# ----------------------------------------------------------------------------------------------------------------
# The problem: the same loss, inputs and start image for both frameworks


@dataclasses.dataclass(frozen=True)
class Settings:
  """One benchmark configuration (everything but the image size)."""

  arch: str = "vgg16"
  weights: str = "auto"            # a weights name/path; 'auto': the default set of `arch`, random if absent
  content_layers: tuple[str, ...] = gatys.CONTENT_LAYERS
  style_layers: tuple[str, ...] = gatys.STYLE_LAYERS
  precision: str = "fp32"
  optimizer: str = "lbfgs"
  pooling: str = "avg"
  warmup: int = 1
  repeats: int = 5
  steps: int = 3                   # optimizer steps per timed call
  step_repeats: int = 3
  threads: int = 0                 # torch threads; 0: every usable core (JAX always uses all of them)
  tile_size: int = 0               # > 0: also time the tiled loss of nst_jax.highres with tiles of this size

  def validate(self) -> None:
    if self.precision not in PRECISIONS:
      raise NSTError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
    if self.arch not in vgg.ARCHS:
      raise NSTError(f"--network must be one of {', '.join(vgg.ARCHS)}, got {self.arch!r}")
    for flag, names in (("--content_layers", self.content_layers), ("--style_layers", self.style_layers)):
      try:
        vgg.check_layers(self.arch, names)
      except ValueError as e:
        raise NSTError(f"{flag}: {e}") from None
    if min(self.repeats, self.steps, self.step_repeats) < 1 or self.warmup < 0:
      raise NSTError("--repeats, --steps and --step_repeats must be >= 1, --warmup >= 0")
    self.config()
    gatys.make_optimizer(self.config())

  def config(self) -> gatys.StylizeConfig:
    return gatys.StylizeConfig(content_layers=self.content_layers, style_layers=self.style_layers,
                                 optimizer=self.optimizer, pooling=self.pooling, iterations=1000)

  @property
  def layers(self) -> tuple[str, ...]:
    return tuple(dict.fromkeys(self.content_layers + self.style_layers))


@dataclasses.dataclass
class Problem:
  """Everything one eval needs, for JAX and for the torch reference."""

  settings: Settings
  shape: tuple[int, int]
  weights: VGGWeights
  weights_note: str
  model: vgg.VGG
  terms_fn: Callable[[jax.Array, Mapping[str, Any]], dict[str, jax.Array]]
  inputs: dict[str, Any]
  x0: np.ndarray                                   # (H, W, 3) float32 in [0, 1]

  def total_loss(self, x: jax.Array, inputs: Mapping[str, Any]) -> jax.Array:
    return sum(self.terms_fn(x, inputs).values())


def random_weights(arch: str, seed: int = 0) -> VGGWeights:
  """He-initialised weights with Caffe preprocessing: the timing of dense convolutions does not depend on the
  values (the harness avoids denormals: activations keep their scale)."""
  return VGGWeights(arch=arch, params=vgg.random_params(arch, seed), preprocessing=CAFFE_VGG,
                    source="random (He init)",
                    source_sha256="0" * 64)


def load_benchmark_weights(settings: Settings) -> tuple[VGGWeights, str]:
  """The weights to time with and a note saying which they are."""
  name = settings.weights if settings.weights != "auto" else DEFAULT_WEIGHTS[settings.arch]
  try:
    weights = resolve_weights(name)
  except NSTError as e:
    if settings.weights != "auto":
      raise
    return random_weights(settings.arch), f"random He-init {settings.arch} ({e})"
  if weights.arch != settings.arch:
    raise NSTError(f"weights {name!r} are {weights.arch}, not --network {settings.arch}")
  return weights, name


@functools.lru_cache(maxsize=1)
def _demo_images() -> tuple[np.ndarray, np.ndarray]:
  return demo.default_content(), demo.default_style()


def benchmark_shape(size: int, aspect: float) -> tuple[int, int]:
  """(H, W) for a size: H = size, W = round(size * aspect) (256 at 4:3 is the issue's 256x341)."""
  return size, max(16, round(size * aspect))


def build_problem(settings: Settings, shape: tuple[int, int], *,
                  weights: tuple[VGGWeights, str] | None = None) -> Problem:
  """`gatys.build_problem` for the demo content and style at `shape` (one full-image region, content relu4_2
  and style relu1_1..relu5_1 unless `settings` say otherwise), started from a noisy content image so that every
  term has a non-zero gradient. bf16 swaps in a bfloat16 VGG; the targets stay those of the float32 network."""
  settings.validate()
  weights, note = weights or load_benchmark_weights(settings)
  h, w = shape
  content_img, style_img = (image_io.resize(img, h, w) for img in _demo_images())
  config = dataclasses.replace(settings.config(), size=max(h, w))
  problem = gatys.build_problem(content=content_img, styles=style_img, weights=weights, config=config)
  if problem.x0.shape[:2] != (h, w):
    raise NSTError(f"internal: stylize made a {problem.x0.shape[:2]} problem for {shape}")
  model = vgg.VGG(settings.arch, settings.layers, pooling=settings.pooling, dtype=_DTYPES[settings.precision])
  terms_fn = problem.terms_fn
  if settings.precision != "fp32":
    guided = gatys.needs_guidance(gatys.build_regions(config, shape, 1))
    terms_fn = gatys.make_loss_terms(model, weights.preprocessing, config, style_layers=settings.style_layers,
                                       has_content=True, guided=guided)
  noise = np.random.default_rng(1).uniform(0.0, 1.0, content_img.shape)
  x0 = np.clip(0.8 * content_img + 0.2 * noise, 0.0, 1.0).astype(np.float32)
  return Problem(settings=settings, shape=(h, w), weights=weights, weights_note=note, model=model,
                 terms_fn=terms_fn, inputs=problem.inputs, x0=x0)


# ----------------------------------------------------------------------------------------------------------------
# nst_jax


def jax_value_and_grad(problem: Problem) -> Callable:
  """The jitted eval: (x, inputs) -> (loss, d loss / d x)."""
  return jax.jit(jax.value_and_grad(problem.total_loss))


def time_jax(problem: Problem) -> dict[str, Any]:
  """Compile time, eval and optimizer-step timings, memory and XLA's cost/memory analysis of nst_jax."""
  s = problem.settings
  gpu = jax.default_backend() == "gpu"
  x = jnp.asarray(problem.x0)
  result: dict[str, Any] = {}

  t0 = time.perf_counter()
  lowered = jax_value_and_grad(problem).lower(x, problem.inputs)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  result["lower_s"], result["compile_s"] = t1 - t0, time.perf_counter() - t1
  result["xla_flops"] = _cost_flops(compiled)
  memory = compiled.memory_analysis()
  if memory is not None:
    result["xla_temp_bytes"] = int(memory.temp_size_in_bytes)
  with PeakMemory(gpu=gpu) as mem:
    result["eval"] = time_calls(lambda: compiled(x, problem.inputs), warmup=s.warmup, repeats=s.repeats)
  result["eval"].update(mem.result)
  loss, grad = compiled(x, problem.inputs)
  result["loss"] = float(loss)
  result["grad_norm"] = float(jnp.linalg.norm(grad))
  result["step"] = _time_jax_steps(problem, gpu=gpu)
  return result


def _cost_flops(compiled) -> float | None:
  try:
    cost = compiled.cost_analysis()
  except Exception:  # noqa: BLE001 (an optional number; some backends have no cost model)
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float(cost["flops"]) if cost and "flops" in cost else None


def _time_jax_steps(problem: Problem, *, gpu: bool) -> dict[str, Any]:
  """`steps` optimizer iterations per call of the chunk runner `stylize` uses; per-iteration times."""
  s = problem.settings
  optimizer = gatys.make_optimizer(s.config())
  x = jnp.asarray(problem.x0)
  state = jax.tree.map(jnp.copy, optimizer.init(x))
  reuse = optim.has_linesearch_state(state)
  run = optim.make_chunk_runner(problem.total_loss, optimizer, chunk_size=s.steps, reuse_linesearch_value=reuse)
  t0 = time.perf_counter()
  compiled = run.lower(x, state, problem.inputs, s.steps).compile()
  compile_s = time.perf_counter() - t0
  carry = {"x": x, "state": state}

  def call():
    carry["x"], carry["state"], step_losses = compiled(carry["x"], carry["state"], problem.inputs, s.steps)
    return step_losses

  with PeakMemory(gpu=gpu) as mem:
    timing = time_calls(call, warmup=s.warmup, repeats=s.step_repeats)
  timing = _per_step(timing, s.steps)
  timing.update(mem.result)
  timing["compile_s"] = compile_s
  # The runner reuses the line search's last value and gradient, so an L-BFGS iteration costs exactly its line
  # search's evaluations; only the last iteration's count survives in the state. Other optimizers: one eval.
  linesearch = optax_linesearch_steps(carry["state"])
  timing["evals_last_step"] = 1 if linesearch is None else linesearch
  timing["final_loss"] = float(call()[-1])
  return timing


def optax_linesearch_steps(state) -> int | None:
  import optax  # noqa: PLC0415 (optax is a dependency; imported here to keep the module's imports short)
  steps = optax.tree_utils.tree_get(state, "num_linesearch_steps")
  return None if steps is None else int(steps)


def _per_step(timing: dict[str, Any], steps: int) -> dict[str, Any]:
  out = {k: [t / steps for t in v] if isinstance(v, list) else v / steps for k, v in timing.items()}
  out["steps_per_call"] = steps
  return out


# ----------------------------------------------------------------------------------------------------------------
# The PyTorch reference


class TorchGatys:
  """The same Gatys loss in PyTorch, written as a PyTorch user would: eager autograd with the image as a leaf
  tensor, F.conv2d on the same weights (HWIO -> OIHW), channels_last memory format (oneDNN's preferred layout on
  CPU), every core, oneDNN enabled, and for bf16 `torch.autocast` around the forward pass (convolutions and the
  Gram products in bf16, losses in fp32)."""

  def __init__(self, problem: Problem, *, threads: int = 0):
    import torch  # noqa: PLC0415 (benchmark-only extra)
    self.torch = torch
    s = problem.settings
    self.settings = s
    self.config = s.config()
    self.device = "cuda" if torch.cuda.is_available() and jax.default_backend() == "gpu" else "cpu"
    if self.device == "cpu":
      torch.set_num_threads(threads or cpu_info()["cores"])
      torch.backends.mkldnn.enabled = True
    else:
      torch.backends.cudnn.benchmark = True
    self.memory_format = torch.channels_last
    self.bf16 = s.precision == "bf16"
    self.plan = conv_plan(s.arch, problem.shape, s.layers)
    params = vgg.params_for(s.arch, problem.weights.params, s.layers)
    self.kernels = {name: (self._tensor(np.asarray(p["kernel"]).transpose(3, 2, 0, 1)).contiguous(
        memory_format=self.memory_format), self._tensor(np.asarray(p["bias"]))) for name, p in params.items()}
    pre = problem.weights.preprocessing
    self.scale, self.flip = pre.input_scale, pre.channel_order == "BGR"
    self.mean = self._tensor(np.asarray(pre.mean, np.float32).reshape(1, 3, 1, 1))
    self.std = self._tensor(np.asarray(pre.std, np.float32).reshape(1, 3, 1, 1))
    self.content = {n: self._tensor(np.asarray(v, np.float32).transpose(0, 3, 1, 2)).contiguous(
        memory_format=self.memory_format) for n, v in problem.inputs["content"].items()}
    self.style = {n: self._tensor(np.asarray(v, np.float32)[0]) for n, v in problem.inputs["style"].items()}
    self.x = self.image_tensor(problem.x0)

  def _tensor(self, array: np.ndarray):
    return self.torch.from_numpy(np.array(array, np.float32, order="C")).to(self.device)  # a writable copy

  def image_tensor(self, image: np.ndarray):
    """(H, W, 3) -> a contiguous (1, H, W, 3) leaf that requires grad. `loss` views it as (1, 3, H, W), which is
    then channels_last; a contiguous leaf is what torch.optim.LBFGS needs (it flattens gradients with view)."""
    return self._tensor(np.asarray(image)[None]).requires_grad_(True)

  def features(self, x) -> dict:
    F = self.torch.nn.functional
    wanted, out = set(self.settings.layers), {}
    last = vgg.deepest_layer(self.settings.arch, self.settings.layers)
    for name in vgg.layer_names(self.settings.arch):
      if name.startswith("conv"):
        x = F.conv2d(x, *self.kernels[name], padding=1)
      elif name.startswith("relu"):
        x = self.torch.relu(x)
      else:
        x = F.avg_pool2d(x, 2) if self.settings.pooling == "avg" else F.max_pool2d(x, 2)
      if name in wanted:
        out[name] = x
      if name == last:
        break
    return out

  def loss(self, image):
    """The weighted sum of `gatys.make_loss_terms`' content, style and TV terms for a (1, H, W, 3) image."""
    torch, c = self.torch, self.config
    x = image.permute(0, 3, 1, 2)  # NCHW view, channels_last strides
    net_in = x * self.scale
    if self.flip:
      net_in = net_in.flip(1)
    net_in = (net_in - self.mean) / self.std
    with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.bf16):
      feats = self.features(net_in)
      grams = {}
      for name in self.settings.style_layers:
        f = feats[name]
        flat = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])  # a view for channels_last features
        grams[name] = flat.t() @ flat
    content = sum(torch.mean(torch.square(feats[n].float() - t)) for n, t in self.content.items()) / len(
        self.content)
    style = 0.0
    for name, target in self.style.items():
      f = feats[name]
      n, m = f.shape[1], f.shape[2] * f.shape[3]
      style = style + torch.sum(torch.square(grams[name].float() / m - target)) / (4.0 * n * n)
    style = style / len(self.style)
    dy = x[:, :, 1:, :] - x[:, :, :-1, :]
    dx = x[:, :, :, 1:] - x[:, :, :, :-1]
    tv = torch.mean(torch.square(dy)) + torch.mean(torch.square(dx))
    return c.content_weight * content + c.style_weight * style + c.tv_weight * tv

  def value_and_grad(self, x=None) -> tuple[float, Any]:
    x = self.x if x is None else x
    x.grad = None
    loss = self.loss(x)
    loss.backward()
    self.sync()
    return float(loss.detach()), x.grad

  def sync(self) -> None:
    if self.device == "cuda":
      self.torch.cuda.synchronize()

  def peak_memory(self):
    """A context measuring peak memory: CUDA allocator peak on GPU, RSS on CPU."""
    if self.device == "cuda":
      return _TorchCudaPeak(self.torch)
    return PeakMemory()


class _TorchCudaPeak:
  def __init__(self, torch):
    self.torch = torch
    self.result: dict[str, Any] = {}

  def __enter__(self):
    self.torch.cuda.reset_peak_memory_stats()
    return self

  def __exit__(self, *exc) -> None:
    self.result = {"device_peak_bytes": int(self.torch.cuda.max_memory_allocated())}


def time_torch(problem: Problem) -> dict[str, Any]:
  """Eval and optimizer-step timings and memory of the PyTorch reference."""
  s = problem.settings
  ref = TorchGatys(problem, threads=s.threads)
  result: dict[str, Any] = {"device": ref.device, "threads": ref.torch.get_num_threads()}
  with ref.peak_memory() as mem:
    result["eval"] = time_calls(ref.value_and_grad, warmup=s.warmup, repeats=s.repeats)
  result["eval"].update(mem.result)
  result["loss"], grad = ref.value_and_grad()
  result["grad_norm"] = float(grad.norm())
  result["step"] = _time_torch_steps(ref, s)
  return result


_TORCH_OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop", "lbfgs": "LBFGS"}


def _time_torch_steps(ref: TorchGatys, s: Settings) -> dict[str, Any] | None:
  """torch.optim's version of `s.optimizer` on the same loss: per-iteration time and evaluations."""
  torch = ref.torch
  name = _TORCH_OPTIMIZERS.get(s.optimizer)
  if name is None:
    return {"skipped": f"no torch.optim counterpart of optax.{s.optimizer}"}
  x = ref.image_tensor(ref.x.detach().cpu().numpy()[0])
  calls = [0]

  def closure():
    calls[0] += 1
    x.grad = None
    loss = ref.loss(x)
    loss.backward()
    return loss

  if name == "LBFGS":
    # As neural-style: the line search and history of nst_jax's default, no early stop.
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=s.steps, history_size=10, line_search_fn="strong_wolfe",
                            tolerance_grad=0.0, tolerance_change=0.0)

    def call():
      opt.step(closure)
      ref.sync()
  else:
    lr = optim.DEFAULT_LEARNING_RATES.get(s.optimizer) or 0.01
    opt = getattr(torch.optim, name)([x], lr=lr)

    def call():
      for _ in range(s.steps):
        opt.step(closure)
      ref.sync()

  with ref.peak_memory() as mem:
    for _ in range(s.warmup):
      call()
    calls[0] = 0
    timing = time_calls(call, warmup=0, repeats=s.step_repeats)
  timing = _per_step(timing, s.steps)
  timing.update(mem.result)
  timing["evals_per_step"] = calls[0] / (s.steps * s.step_repeats)
  return timing


def check_reference(problem: Problem) -> dict[str, float]:
  """Relative differences of the torch reference's loss and image gradient from nst_jax's at the same point:
  evidence that the two time the same work."""
  loss, grad = jax_value_and_grad(problem)(jnp.asarray(problem.x0), problem.inputs)
  ref = TorchGatys(problem, threads=problem.settings.threads)
  t_loss, t_grad = ref.value_and_grad()
  t_grad = t_grad.detach().cpu().double().numpy()[0]
  grad = np.asarray(grad, np.float64)
  return {"loss_jax": float(loss), "loss_torch": t_loss,
          "loss_rel_diff": abs(float(loss) - t_loss) / max(abs(t_loss), 1e-30),
          "grad_rel_diff": float(np.linalg.norm(grad - t_grad) / max(np.linalg.norm(t_grad), 1e-30))}


# ----------------------------------------------------------------------------------------------------------------
# Scaling over (simulated) devices


def device_scaling(problem: Problem, num_devices: int) -> dict[str, Any]:
  """N different images, one per device, evaluated by one jitted, batch-sharded call; checks every loss and
  gradient against one-device evaluations. On CPU the devices are simulated
  (`--xla_force_host_platform_device_count`) and share the same cores: the numbers, not the speed, are the point."""
  from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: PLC0415

  devices = jax.devices()
  if len(devices) < num_devices:
    raise NSTError(f"--devices {num_devices}: JAX sees {len(devices)} device(s); on CPU set "
                   f"XLA_FLAGS=--xla_force_host_platform_device_count={num_devices} before JAX starts")
  mesh = Mesh(np.asarray(devices[:num_devices]), ("batch",))
  batch_sharding = NamedSharding(mesh, PartitionSpec("batch"))
  replicated = NamedSharding(mesh, PartitionSpec())
  rng = np.random.default_rng(2)
  images = np.clip(problem.x0[None] + 0.05 * rng.standard_normal((num_devices, *problem.x0.shape)), 0, 1)
  images = images.astype(np.float32)
  eval_one = jax.value_and_grad(problem.total_loss)
  sharded = jax.jit(jax.vmap(eval_one, in_axes=(0, None)), in_shardings=(batch_sharding, replicated),
                    out_shardings=(batch_sharding, batch_sharding))
  xs = jax.device_put(images, batch_sharding)
  inputs = jax.device_put(problem.inputs, replicated)
  t0 = time.perf_counter()
  compiled = sharded.lower(xs, inputs).compile()
  compile_s = time.perf_counter() - t0
  s = problem.settings
  timing = time_calls(lambda: compiled(xs, inputs), warmup=s.warmup, repeats=s.repeats)
  losses_sharded, grads_sharded = (np.asarray(a) for a in compiled(xs, inputs))
  single = jax.jit(eval_one)
  one = [single(jnp.asarray(img), problem.inputs) for img in images]
  losses_single = np.asarray([float(v) for v, _ in one])
  grads_single = np.stack([np.asarray(g) for _, g in one])
  single_timing = time_calls(lambda: [single(jnp.asarray(img), problem.inputs) for img in images],
                             warmup=0, repeats=max(1, s.repeats // 2))
  grad_diff = max(float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))
                  for a, b in zip(grads_sharded, grads_single))
  return {"devices": num_devices, "device_kind": str(devices[0].platform), "compile_s": compile_s,
          "sharded_eval": timing, "sequential_one_device": single_timing,
          "losses_sharded": losses_sharded.tolist(), "losses_one_device": losses_single.tolist(),
          "max_loss_rel_diff": float(np.max(np.abs(losses_sharded - losses_single) / np.abs(losses_single))),
          "max_grad_rel_diff": grad_diff,
          "output_sharding": str(compiled.output_shardings[0] if hasattr(compiled, "output_shardings") else "")}


# ----------------------------------------------------------------------------------------------------------------
# One size, one framework: optionally in a fresh process


def measure(kind: str, settings: Settings, shape: tuple[int, int]) -> dict[str, Any]:
  """'jax' or 'torch' timings of one size. Run in a fresh process (`isolate`) for clean peak-memory numbers and
  so that neither framework's idle worker threads compete with the other's."""
  if kind == "tiled":
    return time_tiled(settings, shape)
  if kind == "adain":
    return time_adain(settings, shape)
  problem = build_problem(settings, shape)
  out = time_jax(problem) if kind == "jax" else time_torch(problem)
  out["weights"] = problem.weights_note
  return out


def time_tiled(settings: Settings, shape: tuple[int, int]) -> dict[str, Any]:
  """One eval (loss + image gradient) of the tiled loss of `nst_jax.highres` over the whole image with tiles of
  `settings.tile_size` px on every local device: compile time, eval time, time per megapixel, the tile grid."""
  from nst_jax.highres import pyramid as highres  # noqa: PLC0415

  weights, note = load_benchmark_weights(settings)
  h, w = shape
  content_img, style_img = (image_io.resize(img, h, w) for img in _demo_images())
  config = dataclasses.replace(settings.config(), size=max(h, w))
  hr = highres.HighresConfig(tile_size=settings.tile_size, precision=settings.precision)
  mesh = highres.make_mesh()
  problem = highres.build_scale_problem(content=content_img, styles=[style_img], weights=weights, config=config,
                                        shape=shape, tile=settings.tile_size, hr=hr, mesh=mesh)
  noise = np.random.default_rng(1).uniform(0.0, 1.0, content_img.shape)
  x = jnp.asarray(np.clip(0.8 * content_img + 0.2 * noise, 0.0, 1.0).astype(np.float32))
  fn = jax.jit(jax.value_and_grad(lambda x, inputs: sum(problem.terms_fn(x, inputs).values())))
  t0 = time.perf_counter()
  compiled = fn.lower(x, problem.inputs).compile()
  compile_s = time.perf_counter() - t0
  with PeakMemory(gpu=jax.default_backend() == "gpu") as memory:
    timing = time_calls(lambda: compiled(x, problem.inputs), warmup=settings.warmup, repeats=settings.repeats)
  grid = problem.grid
  loss = float(compiled(x, problem.inputs)[0])
  return {"weights": note, "loss": loss, "tile_size": settings.tile_size, "window": list(grid.window),
          "halo": grid.halo,
          "tiles": grid.num_tiles, "devices": int(mesh.devices.size), "compile_s": compile_s, "eval": timing,
          "ms_per_megapixel": 1e3 * timing["median_s"] / (h * w / 1e6), "memory": memory.result}


def parse_image_size(text: str) -> tuple[int, int]:
  """'N' -> (N, N); 'WxH' -> (H, W) (width first, as in 3840x2160)."""
  parts = text.lower().split("x")
  try:
    sides = [int(p) for p in parts]
  except ValueError:
    sides = []
  if len(sides) not in (1, 2) or min(sides) < 16:
    raise NSTError(f"--adain_sizes: {text!r} is not N or WxH with sides of at least 16 px")
  return (sides[0], sides[0]) if len(sides) == 1 else (sides[1], sides[0])


def adain_flops(arch: str, shape: tuple[int, int], style_shape: tuple[int, int]) -> float:
  """FLOPs of one AdaIN stylisation (see the module docstring), convolutions counted with their padding."""
  from nst_jax.methods import adain  # noqa: PLC0415

  def encoder(hw: tuple[int, int]) -> float:
    return sum(2.0 * 9 * h * w * cin * cout for _, h, w, cin, cout in conv_plan(arch, hw, (adain.ENCODER_LAYER,)))

  return 2 * encoder(shape) + encoder(style_shape)


def adain_model(settings: Settings) -> tuple[Any, str]:
  """The AdaIN model to time: the benchmark's encoder weights with the project's decoder trained for them, or a
  freshly initialised decoder (the timing does not depend on the values)."""
  from nst_jax.methods import adain  # noqa: PLC0415

  weights, note = load_benchmark_weights(settings)
  try:
    ckpt = adain.resolve_decoder(adain.DEFAULT_DECODER)
    adain.check_encoder(ckpt, weights)
    return adain.make_model(weights, ckpt), f"{note} + decoder {adain.DEFAULT_DECODER}"
  except NSTError:
    ckpt = adain.DecoderCheckpoint(params=adain.init_decoder(weights.arch), arch=weights.arch, width=64,
                                   encoder_sha256=weights.source_sha256, encoder_source=weights.source)
    return adain.make_model(weights, ckpt), f"{note} + freshly initialised decoder"


def time_adain(settings: Settings, shape: tuple[int, int], *, max_pixels: int | None = None) -> dict[str, Any]:
  """Latency of one `adain.stylize` call on an (H, W) content with a style of the same size (host to host)."""
  from nst_jax.methods import adain  # noqa: PLC0415

  model, note = adain_model(settings)
  h, w = shape
  content_img, style_img = (image_io.resize(img, h, w) for img in _demo_images())
  max_pixels = max_pixels or adain.DEFAULT_MAX_PIXELS
  tiling = adain.tiling_for_budget(max_pixels) if h * w > max_pixels else None

  def call() -> np.ndarray:
    return adain.stylize(content_img, [style_img], model=model, alpha=1.0, max_pixels=max_pixels)

  t0 = time.perf_counter()
  out = call()
  first_s = time.perf_counter() - t0
  with PeakMemory(gpu=jax.default_backend() == "gpu") as memory:
    timing = time_calls(call, warmup=0, repeats=settings.repeats)
  path = "whole image"
  if tiling is not None:
    path = f"{adain.tile_count(shape, tiling)} tiles of {tiling.tile} px, {tiling.thumbnail} px thumbnail"
  gflop = adain_flops(model.arch, (h + (-h) % 8, w + (-w) % 8), (h + (-h) % 8, w + (-w) % 8)) / 1e9
  return {"weights": note, "shape": [h, w], "megapixels": h * w / 1e6, "path": path, "first_call_s": first_s,
          "latency": timing, "gflop": gflop, "gflops": gflop / timing["median_s"], "memory": memory.result,
          "output_finite": bool(np.all(np.isfinite(out))), "output_shape": list(out.shape)}


def _measure_isolated(kind: str, settings: Settings, shape: tuple[int, int]) -> dict[str, Any]:
  ctx = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
    return pool.submit(measure, kind, settings, shape).result()


def run_benchmark(settings_list: Sequence[Settings], sizes: Sequence[int], *, aspect: float = 4 / 3,
                  reference: str = "torch", devices: int = 1, tile_size: int = 0,
                  adain_shapes: Sequence[tuple[int, int]] = (), isolate: bool = True,
                  peak_gflops: float = 0.0, check_size: int = 64, gemm_size: int = 2048,
                  log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)
                  ) -> dict[str, Any]:
  """Every (precision setting, size) with nst_jax and, if `reference == 'torch'`, the PyTorch reference; then
  the reference check at `check_size`, device scaling if `devices > 1`, AdaIN latency at each of `adain_shapes`
  ((H, W)). Returns the report (JSON-ready)."""
  if reference not in ("torch", "none"):
    raise NSTError(f"--reference must be 'torch' or 'none', got {reference!r}")
  if reference == "torch" and importlib.util.find_spec("torch") is None:
    raise NSTError("--reference torch needs PyTorch: pip install -e '.[torch]' (or use --reference none)")
  for settings in settings_list:
    settings.validate()
  info = machine_info()
  report: dict[str, Any] = {"machine": info, "machine_description": describe_machine(info),
                            "argv": sys.argv, "aspect": aspect, "reference": reference, "results": [],
                            "peaks": {}, "skipped": dict(SKIPPED)}
  if tile_size:
    del report["skipped"]["tiled"]
    report["tiled"] = []
  for precision in dict.fromkeys(s.precision for s in settings_list):
    stated, derivation = stated_peak_gflops(info["cpu"], precision)
    if peak_gflops > 0:
      stated, derivation = peak_gflops, f"{peak_gflops:g} GFLOP/s given by --peak_gflops"
    if info["jax_backend"] != "cpu" and peak_gflops <= 0:
      stated, derivation = 0.0, "no stated peak for accelerators; give --peak_gflops"
    report["peaks"][precision] = {"stated_gflops": stated, "derivation": derivation,
                                  "gemm_size": gemm_size, "jax_gemm_gflops": measure_gemm_gflops(precision, gemm_size)}
  run = _measure_isolated if isolate else measure
  for settings in settings_list:
    for size in sorted(sizes):  # ascending, so that a device's never-reset peak is that of the current size
      shape = benchmark_shape(size, aspect)
      flops = flop_breakdown(settings.arch, shape, content_layers=settings.content_layers,
                             style_layers=settings.style_layers)
      row: dict[str, Any] = {"size": size, "shape": list(shape), "megapixels": shape[0] * shape[1] / 1e6,
                             "precision": settings.precision, "arch": settings.arch,
                             "optimizer": settings.optimizer, "layers": list(settings.layers),
                             "flops": flops, "gflop": sum(flops.values()) / 1e9}
      log(f"[benchmark] {settings.arch} {settings.precision} {shape[0]}x{shape[1]}: nst_jax ...")
      row["jax"] = run("jax", settings, shape)
      if reference == "torch":
        log(f"[benchmark] {settings.arch} {settings.precision} {shape[0]}x{shape[1]}: torch ...")
        row["torch"] = run("torch", settings, shape)
      _derive(row, report["peaks"][settings.precision])
      report["results"].append(row)
      if tile_size:
        log(f"[benchmark] {settings.arch} {settings.precision} {shape[0]}x{shape[1]}: tiled, {tile_size} px ...")
        tiled = run("tiled", dataclasses.replace(settings, tile_size=tile_size), shape)
        tiled["untiled_eval_s"] = row["jax"]["eval"]["median_s"]
        report["tiled"].append({"size": size, "shape": list(shape), "precision": settings.precision, **tiled})
  if reference == "torch":
    check_settings = dataclasses.replace(settings_list[0], precision="fp32")
    log(f"[benchmark] reference check at {check_size} px ...")
    report["reference_check"] = {"size": check_size,
                                 **check_reference(build_problem(check_settings, benchmark_shape(check_size,
                                                                                                 aspect)))}
  if devices > 1:
    log(f"[benchmark] device scaling over {devices} devices ...")
    report["device_scaling"] = device_scaling(build_problem(settings_list[0], benchmark_shape(min(sizes), aspect)),
                                              devices)
  else:
    report["skipped"]["device_scaling"] = "run with --devices N (N > 1) to time and check N-device sharding"
  if adain_shapes:
    del report["skipped"]["adain"]
    report["adain"] = []
    for shape in adain_shapes:
      log(f"[benchmark] AdaIN {shape[0]}x{shape[1]} ...")
      report["adain"].append(run("adain", settings_list[0], tuple(shape)))
  return report


def _derive(row: dict[str, Any], peak: Mapping[str, Any]) -> None:
  """Achieved GFLOP/s, % of the stated peak and the torch/nst_jax ratios."""
  flop = row["gflop"]
  for kind in ("jax", "torch"):
    if kind in row:
      t = row[kind]["eval"]["median_s"]
      row[kind]["gflops"] = flop / t
      row[kind]["percent_of_peak"] = 100 * flop / t / peak["stated_gflops"] if peak["stated_gflops"] else None
  if "torch" in row:
    row["speedup_eval"] = row["torch"]["eval"]["median_s"] / row["jax"]["eval"]["median_s"]
    if row["torch"].get("step") and "median_s" in row["torch"]["step"]:
      row["speedup_step"] = row["torch"]["step"]["median_s"] / row["jax"]["step"]["median_s"]


# ----------------------------------------------------------------------------------------------------------------
# Reports


def _ms(seconds: float | None) -> str:
  return "–" if seconds is None else f"{seconds * 1e3:.0f}" if seconds >= 0.1 else f"{seconds * 1e3:.1f}"


def _mib(num_bytes: int | None) -> str:
  return "–" if num_bytes is None else f"{num_bytes / 2**20:.0f}"


def _memory(part: Mapping[str, Any]) -> int | None:
  return part.get("device_peak_bytes") or part.get("peak_rss_bytes")


def _memory_cell(part: Mapping[str, Any] | None) -> str:
  """Peak MiB and, on CPU, (+ what the timed calls added to the RSS they started from)."""
  if not part:
    return "–"
  if part.get("device_peak_bytes"):
    return _mib(part["device_peak_bytes"])
  added = part["peak_rss_bytes"] - part["rss_before_bytes"] if part.get("rss_before_bytes") else None
  return _mib(part["peak_rss_bytes"]) + ("" if added is None else f" (+{_mib(added)})")


def _gatys_table(report: Mapping[str, Any]) -> list[str]:
  """One row per (precision, size) of the Gatys eval and step timings, and what they mean."""
  lines: list[str] = []
  has_torch = any("torch" in r for r in report["results"])
  head = ["size (H×W)", "MP", "prec.", "GFLOP/eval", "nst_jax eval ms (min–max)", "GFLOP/s", "% peak",
          "compile s"]
  if has_torch:
    head += ["torch eval ms (min–max)", "torch/nst_jax eval"]
  head += ["nst_jax step ms (evals)"]
  if has_torch:
    head += ["torch step ms (evals)", "torch/nst_jax step"]
  head += ["peak MiB (+added) nst_jax" + (" / torch" if has_torch else "")]
  lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in report["results"]:
    j = r["jax"]
    cells = [f"{r['shape'][0]}×{r['shape'][1]}", f"{r['megapixels']:.3f}", r["precision"], f"{r['gflop']:.1f}",
             f"{_ms(j['eval']['median_s'])} ({_ms(j['eval']['min_s'])}–{_ms(j['eval']['max_s'])})",
             f"{j['gflops']:.0f}", "–" if j["percent_of_peak"] is None else f"{j['percent_of_peak']:.0f}%",
             f"{j['compile_s']:.1f}"]
    t = r.get("torch")
    if has_torch:
      cells += [f"{_ms(t['eval']['median_s'])} ({_ms(t['eval']['min_s'])}–{_ms(t['eval']['max_s'])})",
                f"**{r['speedup_eval']:.2f}×**"] if t else ["–", "–"]
    cells.append(f"{_ms(j['step']['median_s'])} ({j['step']['evals_last_step']})")
    if has_torch:
      ts = t.get("step") if t else None
      if ts and "median_s" in ts:
        cells += [f"{_ms(ts['median_s'])} ({ts['evals_per_step']:.1f})", f"{r['speedup_step']:.2f}×"]
      else:
        cells += ["–", "–"]
    memory = _memory_cell(j["eval"])
    if has_torch:
      memory += " / " + _memory_cell(t["eval"] if t else None)
    cells.append(memory)
    lines.append("| " + " | ".join(cells) + " |")
  lines += ["", "eval = loss + gradient with respect to the image (VGG forward and backward); step = one optimizer "
            "iteration (evals: function evaluations in it — nst_jax: the last iteration's line search, torch: the "
            "mean); torch/nst_jax > 1 means nst_jax is faster. Times are medians over repeats after warm-up; "
            "GFLOP/s use the analytic FLOP model of `nst_jax.benchmark` and the median time."]
  return lines


def markdown_table(report: Mapping[str, Any]) -> str:
  """The results as Markdown: machine, peaks, one row per (precision, size), then checks and skipped parts."""
  weights = sorted({r[kind]["weights"] for r in report["results"] for kind in ("jax", "torch") if kind in r}
                   | {a["weights"] for a in report.get("adain", [])})
  lines = [f"Machine: {report['machine_description']}; jax {report['machine']['jax']}, "
           f"torch {report['machine'].get('torch') or 'not installed'}.",
           f"Command: `{' '.join(['python', *report['argv']])}`; weights: {'; '.join(weights)}.", ""]
  for precision, peak in report["peaks"].items():
    lines.append(f"- {precision} peak: {peak['derivation']}; a {peak['gemm_size']}³ JAX matrix product runs at "
                 f"{peak['jax_gemm_gflops']:.0f} GFLOP/s.")
  lines.append("")
  if report["results"]:
    lines += _gatys_table(report)
  check = report.get("reference_check")
  if check:
    lines.append(f"Reference check ({check['size']} px, fp32): loss differs by {check['loss_rel_diff']:.1e}, "
                 f"gradient by {check['grad_rel_diff']:.1e} (relative).")
  scaling = report.get("device_scaling")
  if scaling:
    lines.append(f"Device scaling: {scaling['devices']} {scaling['device_kind']} devices, one image each: sharded "
                 f"eval {_ms(scaling['sharded_eval']['median_s'])} ms vs {scaling['devices']} one-device evals "
                 f"{_ms(scaling['sequential_one_device']['median_s'])} ms; losses differ by at most "
                 f"{scaling['max_loss_rel_diff']:.1e}, gradients by {scaling['max_grad_rel_diff']:.1e}.")
  for t in report.get("tiled", []):
    lines.append(f"Tiled loss ({t['precision']}, {t['shape'][0]}×{t['shape'][1]}): {t['tiles']} tiles of "
                 f"{t['tile_size']} px (windows {t['window'][0]}×{t['window'][1]}, halo {t['halo']} px) on "
                 f"{t['devices']} device(s): eval {_ms(t['eval']['median_s'])} ms = {t['ms_per_megapixel']:.0f} "
                 f"ms/MP, {t['eval']['median_s'] / t['untiled_eval_s']:.2f}× the untiled eval; compile "
                 f"{t['compile_s']:.1f} s.")
  if report.get("adain"):
    lines += ["", "| AdaIN (H×W) | MP | path | latency ms (min–max) | first call s | GFLOP | GFLOP/s | peak MiB |",
              "|---|---|---|---|---|---|---|---|"]
    for a in report["adain"]:
      t = a["latency"]
      lines.append(f"| {a['shape'][0]}×{a['shape'][1]} | {a['megapixels']:.2f} | {a['path']} | {_ms(t['median_s'])} "
                   f"({_ms(t['min_s'])}–{_ms(t['max_s'])}) | {a['first_call_s']:.1f} | {a['gflop']:.0f} | "
                   f"{a['gflops']:.0f} | {_memory_cell(a['memory'])} |")
    lines += ["", "AdaIN: one `nst_jax.adain.stylize` call, host image in and out, α = 1, style of the same size; "
              "first call includes compilation.", ""]
  for what, why in report["skipped"].items():
    lines.append(f"Not measured ({what}): {why}.")
  return "\n".join(lines) + "\n"


def plot(report: Mapping[str, Any], path: str | os.PathLike) -> None:
  """Time per eval/step and peak memory against megapixels, one line per framework and precision."""
  import matplotlib  # noqa: PLC0415 (only the report needs it)
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
  # Colour: framework; line style: precision; marker: eval (o) or optimizer step (x).
  for precision, style in zip(dict.fromkeys(r["precision"] for r in report["results"]), ("-", ":", "--")):
    rows = [r for r in report["results"] if r["precision"] == precision]
    mp = [r["megapixels"] for r in rows]
    for kind, label, color in (("jax", "nst_jax", "C0"), ("torch", "torch", "C1")):
      if not all(kind in r for r in rows):
        continue
      ax_t.plot(mp, [r[kind]["eval"]["median_s"] * 1e3 for r in rows], style, marker="o", color=color,
                label=f"{label} eval {precision}")
      step = [r[kind]["step"].get("median_s") if r[kind].get("step") else None for r in rows]
      if all(v is not None for v in step):
        ax_t.plot(mp, [v * 1e3 for v in step], style, marker="x", color=color, alpha=0.5,
                  label=f"{label} step {precision}")
      ax_m.plot(mp, [(_memory(r[kind]["eval"]) or 0) / 2**20 for r in rows], style, marker="o", color=color,
                label=f"{label} {precision}")
  if report.get("adain"):
    mp = [a["megapixels"] for a in report["adain"]]
    ax_t.plot(mp, [a["latency"]["median_s"] * 1e3 for a in report["adain"]], "-", marker="s", color="C2",
              label="nst_jax AdaIN stylisation")
    ax_m.plot(mp, [(_memory(a["memory"]) or 0) / 2**20 for a in report["adain"]], "-", marker="s", color="C2",
              label="nst_jax AdaIN")
  ax_t.set(xlabel="megapixels", ylabel="ms per eval / step / stylisation", title="time")
  ax_m.set(xlabel="megapixels", ylabel="MiB", title="peak memory (RSS on CPU, device on GPU)")
  for ax in (ax_t, ax_m):
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  fig.suptitle(report["machine_description"], fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_report(report: Mapping[str, Any], out: str | os.PathLike) -> dict[str, pathlib.Path]:
  """Writes OUT.json, OUT.md and OUT.png (OUT a path prefix; a directory gets benchmark.* inside it)."""
  out = pathlib.Path(out)
  if out.is_dir() or not out.suffix and str(out).endswith(os.sep):
    out = out / "benchmark"
  out.parent.mkdir(parents=True, exist_ok=True)
  paths = {"json": out.with_suffix(".json"), "markdown": out.with_suffix(".md"), "plot": out.with_suffix(".png")}
  paths["json"].write_text(json.dumps(report, indent=1, default=_json_default) + "\n")
  paths["markdown"].write_text(markdown_table(report))
  plot(report, paths["plot"])
  return paths


def _json_default(value: Any) -> Any:
  if isinstance(value, (np.floating, np.integer)):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  return str(value)
