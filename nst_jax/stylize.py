"""Gatys et al. (2016) optimisation-based style transfer.

The image is optimised directly, as RGB in [0, 1]; the weight source's preprocessing is applied inside the loss,
so the same code serves Caffe-style (BGR, 0..255, mean) and torchvision-style (RGB, mean/std) weights. Everything
the loss needs (VGG parameters, content features, style Gram matrices) is an argument of the jitted step, never a
baked-in constant, so one compilation serves the whole run.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import image_io, losses, optim, vgg
from nst_jax.errors import NSTError
from nst_jax.progress import ProgressBar
from nst_jax.weights import VGGWeights

CONTENT_LAYERS = ("relu4_2",)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


@dataclasses.dataclass(frozen=True)
class StylizeConfig:
  """Settings of one Gatys run. Loss weights apply to the normalised losses of `nst_jax.losses`."""

  size: int = 512
  iterations: int = 500
  optimizer: str = "lbfgs"
  learning_rate: float | None = None
  content_weight: float = 1.0
  style_weight: float = 10.0
  tv_weight: float = 10.0
  content_layers: tuple[str, ...] = CONTENT_LAYERS
  style_layers: tuple[str, ...] = STYLE_LAYERS
  init: str = "content"  # content | noise | style | path of an image
  pooling: str = "avg"
  seed: int = 0
  save_every: int = 0  # 0: no intermediate images
  log_every: int = 10


@dataclasses.dataclass
class StylizeResult:
  image: np.ndarray                  # (H, W, 3) float32 in [0, 1]
  loss_history: np.ndarray           # total loss evaluated at each iteration
  initial_terms: dict[str, float]    # weighted content / style / tv losses of the initial image
  final_terms: dict[str, float]      # the same for the result


def _validate(config: StylizeConfig, arch: str) -> None:
  if config.iterations < 1:
    raise NSTError(f"--iterations must be at least 1, got {config.iterations}")
  if config.size < 16:
    raise NSTError(f"--size must be at least 16 pixels, got {config.size}")
  for flag, names in (("--content_layers", config.content_layers), ("--style_layers", config.style_layers)):
    if not names:
      raise NSTError(f"{flag} is empty")
    try:
      vgg.check_layers(arch, names)
    except ValueError as e:
      raise NSTError(f"{flag}: {e}") from None
  for flag, value in (("--content_weight", config.content_weight), ("--style_weight", config.style_weight),
                      ("--tv_weight", config.tv_weight)):
    if not math.isfinite(value) or value < 0:
      raise NSTError(f"{flag} must be a finite number >= 0, got {value}")
  if config.pooling not in ("max", "avg"):
    raise NSTError(f"--pooling must be 'max' or 'avg', got {config.pooling!r}")
  # Building the optimizer is cheap; doing it here refuses a bad name before weights and features are computed.
  optim.make_optimizer(config.optimizer, learning_rate=config.learning_rate)


def check_memory(shape: tuple[int, int], arch: str, layers: Sequence[str]) -> None:
  """Refuses a request whose VGG forward + backward pass cannot fit in this machine's memory."""
  need = vgg.estimate_training_bytes(arch, shape, layers)
  have = _physical_memory_bytes()
  if have and need > 0.8 * have:
    raise NSTError(f"a {shape[1]}x{shape[0]} image needs about {need / 2**30:.1f} GiB for one VGG pass and "
                   f"this machine has {have / 2**30:.1f} GiB; choose a smaller --size")


def _physical_memory_bytes() -> int:
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError, AttributeError):
    return 0


def make_loss_terms(model_content_style: vgg.VGG, preprocessing, *, content_weight: float, style_weight: float,
                    tv_weight: float) -> Callable[[jax.Array, Mapping[str, Any]], dict[str, jax.Array]]:
  """Returns `terms(image, inputs)` -> weighted {'content', 'style', 'tv'}; inputs holds 'params',
  'content' (layer -> features) and 'style' (layer -> Gram matrix)."""

  def terms(image: jax.Array, inputs: Mapping[str, Any]) -> dict[str, jax.Array]:
    feats = model_content_style.apply({"params": inputs["params"]}, preprocessing.apply(image)[None])
    return {
        "content": content_weight * losses.content_loss(features=feats, targets=inputs["content"]),
        "style": style_weight * losses.style_loss(features=feats, target_grams=inputs["style"]),
        "tv": tv_weight * losses.total_variation_loss(image=image),
    }

  return terms


def initial_image(init: str, *, content: np.ndarray, style: np.ndarray, seed: int) -> np.ndarray:
  """The starting point: the content, white noise, the style resized to the content, or an image file."""
  h, w = content.shape[:2]
  if init == "content":
    return content.copy()
  if init == "noise":
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=content.shape).astype(np.float32)
  if init == "style":
    return image_io.resize(style, h, w)
  return image_io.resize(image_io.load_image(init, what="--init image"), h, w)


def stylize(*, content: np.ndarray, style: np.ndarray, weights: VGGWeights, config: StylizeConfig,
            on_intermediate: Callable[[int, np.ndarray], None] | None = None,
            progress: bool = True) -> StylizeResult:
  """Runs Gatys et al.'s optimisation. `content` and `style` are (H, W, 3) float images in [0, 1] that are resized
  here: the content to `config.size` on its long side, the style to the same long side."""
  _validate(config, weights.arch)
  all_layers = tuple(dict.fromkeys(config.content_layers + config.style_layers))
  check_memory(image_io.long_side_shape(content.shape, config.size), weights.arch, all_layers)
  content = image_io.resize_long_side(content, config.size)
  style = image_io.resize_long_side(style, config.size)

  model = vgg.VGG(weights.arch, all_layers, pooling=config.pooling)
  params = jax.tree.map(jnp.asarray, vgg.params_for(weights.arch, weights.params, all_layers))
  features = jax.jit(lambda p, img: model.apply({"params": p}, weights.preprocessing.apply(img)[None]))
  content_feats = features(params, jnp.asarray(content))
  style_feats = features(params, jnp.asarray(style))
  inputs = {
      "params": params,
      "content": {name: content_feats[name] for name in config.content_layers},
      "style": {name: losses.gram_matrix(style_feats[name]) for name in config.style_layers},
  }
  terms_fn = make_loss_terms(model, weights.preprocessing, content_weight=config.content_weight,
                             style_weight=config.style_weight, tv_weight=config.tv_weight)
  x0 = initial_image(config.init, content=content, style=style, seed=config.seed)
  return optimize_image(terms_fn, inputs, x0, config=config, on_intermediate=on_intermediate, progress=progress)


def optimize_image(terms_fn, inputs, x0: np.ndarray, *, config: StylizeConfig,
                   on_intermediate: Callable[[int, np.ndarray], None] | None = None,
                   progress: bool = True) -> StylizeResult:
  """Minimises sum(terms_fn(x, inputs).values()) over the image x, starting at x0, for config.iterations steps."""

  def total_loss(x, inputs):
    return sum(terms_fn(x, inputs).values())

  optimizer = optim.make_optimizer(config.optimizer, learning_rate=config.learning_rate)
  x = jnp.asarray(x0, jnp.float32)
  # optax may alias one buffer in several state leaves; copies keep buffer donation in the runner valid.
  opt_state = jax.tree.map(jnp.copy, optimizer.init(x))
  chunk = _chunk_size(config)
  run = optim.make_chunk_runner(total_loss, optimizer, chunk_size=chunk,
                                reuse_linesearch_value=optim.has_linesearch_state(opt_state))
  eval_terms = jax.jit(terms_fn)
  initial_terms = {k: float(v) for k, v in eval_terms(x, inputs).items()}
  bar = ProgressBar(config.iterations, label=f"{config.optimizer} ") if progress else None
  history: list[np.ndarray] = []
  last_good = np.asarray(x)
  done = 0
  while done < config.iterations:
    steps = min(chunk, config.iterations - done)
    x, opt_state, chunk_losses = run(x, opt_state, inputs, steps)
    chunk_losses = np.asarray(chunk_losses[:steps])
    if not np.all(np.isfinite(chunk_losses)):
      bad = done + int(np.argmin(np.isfinite(chunk_losses))) + 1
      if bar:
        bar.close()
      raise NonFiniteLossError(f"the loss became NaN/inf at iteration {bad}; lower --learning_rate or the loss "
                               f"weights", last_good_image=np.clip(last_good, 0, 1), iteration=done)
    history.append(chunk_losses)
    done += steps
    last_good = np.asarray(x)
    if bar:
      bar.update(done, {k: float(v) for k, v in eval_terms(x, inputs).items()})
    if on_intermediate and config.save_every and done % config.save_every == 0 and done < config.iterations:
      on_intermediate(done, np.clip(last_good, 0.0, 1.0))
  if bar:
    bar.close()
  final_terms = {k: float(v) for k, v in eval_terms(x, inputs).items()}
  return StylizeResult(image=np.clip(last_good, 0.0, 1.0), loss_history=np.concatenate(history),
                       initial_terms=initial_terms, final_terms=final_terms)


def _chunk_size(config: StylizeConfig) -> int:
  """Steps per host round-trip: the logging interval, shortened so that intermediate saves land on time."""
  chunk = max(1, config.log_every)
  if config.save_every:
    chunk = math.gcd(chunk, config.save_every)
  return min(chunk, config.iterations)


class NonFiniteLossError(NSTError):
  """The optimisation diverged; carries the last finite image so that no work is lost."""

  def __init__(self, message: str, *, last_good_image: np.ndarray, iteration: int):
    super().__init__(message)
    self.last_good_image = last_good_image
    self.iteration = iteration
