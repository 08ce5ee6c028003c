"""Timing nst_jax: the eval and the optimizer step of the Gatys loss, sharding over devices, the tiled loss and one
AdaIN stylisation."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import optim
from nst_jax.errors import NSTError
from nst_jax.io import image_io
from nst_jax.objective.config import make_optimizer
from nst_jax.objective.plan import resolve_plan

from experiments.benchmarks.benchmarking.flops import adain_flops
from experiments.benchmarks.benchmarking.machine import PeakMemory, time_calls
from experiments.benchmarks.benchmarking.problem import (BenchmarkProblem, BenchmarkSettings, demo_images,
                                                        load_benchmark_weights)


def jax_value_and_grad(problem: BenchmarkProblem) -> Callable:
  """The jitted eval: (x, inputs) -> (loss, d loss / d x)."""
  return jax.jit(jax.value_and_grad(problem.total_loss))


def time_jax(problem: BenchmarkProblem) -> dict[str, Any]:
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
  result["xla_flops"] = cost_flops(compiled)
  memory = compiled.memory_analysis()
  if memory is not None:
    result["xla_temp_bytes"] = int(memory.temp_size_in_bytes)
  with PeakMemory(gpu=gpu) as mem:
    result["eval"] = time_calls(lambda: compiled(x, problem.inputs), warmup=s.warmup, repeats=s.repeats)
  result["eval"].update(mem.result)
  loss, grad = compiled(x, problem.inputs)
  result["loss"] = float(loss)
  result["grad_norm"] = float(jnp.linalg.norm(grad))
  result["step"] = time_jax_steps(problem, gpu=gpu)
  return result


def cost_flops(compiled) -> float | None:
  try:
    cost = compiled.cost_analysis()
  except Exception:  # noqa: BLE001 (an optional number; some backends have no cost model)
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float(cost["flops"]) if cost and "flops" in cost else None


def time_jax_steps(problem: BenchmarkProblem, *, gpu: bool) -> dict[str, Any]:
  """`steps` optimizer iterations per call of the chunk runner `stylize` uses; per-iteration times."""
  s = problem.settings
  optimizer = make_optimizer(s.config())
  x = jnp.asarray(problem.x0)
  state = optim.init_state(optimizer, x)
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
  timing = per_step(timing, s.steps)
  timing.update(mem.result)
  timing["compile_s"] = compile_s
  # 'lbfgs' (and every first-order optimizer) evaluates once per step. For 'lbfgs_zoom' the runner reuses the line
  # search's last value and gradient, so an iteration costs exactly its line search's evaluations; only the last
  # iteration's count survives in the state.
  linesearch = optax_linesearch_steps(carry["state"])
  timing["evals_last_step"] = 1 if linesearch is None else linesearch
  timing["final_loss"] = float(call()[-1])
  return timing


def optax_linesearch_steps(state) -> int | None:
  import optax  # noqa: PLC0415 (optax is a dependency; imported here to keep the module's imports short)
  steps = optax.tree_utils.tree_get(state, "num_linesearch_steps")
  return None if steps is None else int(steps)


def per_step(timing: dict[str, Any], steps: int) -> dict[str, Any]:
  out = {k: [t / steps for t in v] if isinstance(v, list) else v / steps for k, v in timing.items()}
  out["steps_per_call"] = steps
  return out



def device_scaling(problem: BenchmarkProblem, num_devices: int) -> dict[str, Any]:
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



def time_tiled(settings: BenchmarkSettings, shape: tuple[int, int]) -> dict[str, Any]:
  """One eval (loss + image gradient) of the tiled loss of `nst_jax.highres` over the whole image with tiles of
  `settings.tile_size` px on every local device: compile time, eval time, time per megapixel, the tile grid."""
  from nst_jax.highres import distributed, highres_config, scale_problem  # noqa: PLC0415

  weights, note = load_benchmark_weights(settings)
  h, w = shape
  content_img, style_img = (image_io.resize(img, h, w) for img in demo_images())
  config = dataclasses.replace(settings.config(), size=max(h, w))
  hr = highres_config.HighresConfig(tile_size=settings.tile_size, precision=settings.precision)
  mesh = distributed.make_mesh()
  problem = scale_problem.build_scale_problem(content=content_img, styles=[style_img], weights=weights,
                                              plan=resolve_plan(config, arch=weights.arch), shape=shape, tile=settings.tile_size, hr=hr, mesh=mesh)
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



def adain_model(settings: BenchmarkSettings) -> tuple[Any, str]:
  """The AdaIN model to time: the benchmark's encoder weights with the project's decoder trained for them, or a
  freshly initialised decoder (the timing does not depend on the values)."""
  from nst_jax.methods.adain import stylize as adain  # noqa: PLC0415
  from nst_jax.models import adain_decoder
  from nst_jax.weights import adain_decoders

  weights, note = load_benchmark_weights(settings)
  try:
    ckpt = adain_decoders.resolve_decoder(adain_decoder.DEFAULT_DECODER)
    adain_decoders.check_encoder(ckpt, weights)
    return adain.make_model(weights, ckpt), f"{note} + decoder {adain_decoder.DEFAULT_DECODER}"
  except NSTError:
    ckpt = adain_decoder.DecoderCheckpoint(params=adain_decoder.init_decoder(weights.arch), arch=weights.arch, width=64,
                                           encoder_sha256=weights.source_sha256, encoder_source=weights.source)
    return adain.make_model(weights, ckpt), f"{note} + freshly initialised decoder"


def time_adain(settings: BenchmarkSettings, shape: tuple[int, int], *, max_pixels: int | None = None,
               images: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
  """Latency of one `adain.stylize` call on an (H, W) content with a style of the same size (host to host);
  `images` (content, style) default to the demo pair."""
  from nst_jax.methods import blend_tiles  # noqa: PLC0415
  from nst_jax.methods.adain import stylize as adain  # noqa: PLC0415

  model, note = adain_model(settings)
  h, w = shape
  content_img, style_img = (image_io.resize(img, h, w) for img in (images or demo_images()))
  max_pixels = max_pixels or adain.DEFAULT_MAX_PIXELS
  tiling = blend_tiles.tiling_for_budget(max_pixels) if h * w > max_pixels else None

  def call() -> np.ndarray:
    return adain.stylize(content_img, [style_img], model=model, alpha=1.0, max_pixels=max_pixels)

  t0 = time.perf_counter()
  out = call()
  first_s = time.perf_counter() - t0
  with PeakMemory(gpu=jax.default_backend() == "gpu") as memory:
    timing = time_calls(call, warmup=0, repeats=settings.repeats)
  path = "whole image"
  if tiling is not None:
    path = f"{blend_tiles.tile_count(shape, tiling)} tiles of {tiling.tile} px, {tiling.thumbnail} px thumbnail"
  padded = (h + (-h) % 8, w + (-w) % 8)
  gflop = adain_flops(model.enc_params, model.dec_params, padded, padded) / 1e9
  return {"weights": note, "shape": [h, w], "megapixels": h * w / 1e6, "path": path, "first_call_s": first_s,
          "latency": timing, "gflop": gflop, "gflops": gflop / timing["median_s"], "memory": memory.result,
          "output_finite": bool(np.all(np.isfinite(out))), "output_shape": list(out.shape)}

