"""The benchmark's problem: the same Gatys loss, inputs and start image for nst_jax and the PyTorch reference."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from nst_jax import demo
from nst_jax.errors import NSTError
from nst_jax.io import image_io
from nst_jax.methods import gatys
from nst_jax.objective.images import build_regions, needs_guidance
from nst_jax.objective.terms import make_loss_terms
from nst_jax.objective.config import CONTENT_LAYERS, STYLE_LAYERS, StylizeConfig
from nst_jax.models import vgg
from nst_jax.models.preprocessing import CAFFE_VGG
from nst_jax.weights.format import VGGWeights
from nst_jax.weights.store import resolve_weights

from experiments.benchmarks.benchmarking.machine import DTYPES

PRECISIONS = ("fp32", "bf16")
DEFAULT_WEIGHTS = {"vgg16": "hed-vgg16", "vgg19": "vgg19-torchvision"}


@dataclasses.dataclass(frozen=True)
class BenchmarkSettings:
  """One benchmark configuration (everything but the image size)."""

  arch: str = "vgg16"
  weights: str = "auto"            # a weights name/path; 'auto': the default set of `arch`, random if absent
  content_layers: tuple[str, ...] = CONTENT_LAYERS
  style_layers: tuple[str, ...] = STYLE_LAYERS
  precision: str = "fp32"
  optimizer: str = "lbfgs"
  pooling: str = "avg"
  warmup: int = 1
  repeats: int = 5
  steps: int = 3                   # optimizer steps per timed call
  step_repeats: int = 3
  threads: int = 0                 # torch threads; 0: every usable core (JAX always uses all of them)
  tile_size: int = 0               # > 0: also time the tiled loss of nst_jax.highres with tiles of this size

  def __post_init__(self) -> None:
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
    self.config()  # StylizeConfig checks the optimizer and the rest when it is made

  def config(self) -> StylizeConfig:
    return StylizeConfig(content_layers=self.content_layers, style_layers=self.style_layers,
                         optimizer=self.optimizer, pooling=self.pooling, iterations=1000)

  @property
  def layers(self) -> tuple[str, ...]:
    return tuple(dict.fromkeys(self.content_layers + self.style_layers))


@dataclasses.dataclass
class BenchmarkProblem:
  """Everything one eval needs, for JAX and for the torch reference."""

  settings: BenchmarkSettings
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


def load_benchmark_weights(settings: BenchmarkSettings) -> tuple[VGGWeights, str]:
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
def demo_images() -> tuple[np.ndarray, np.ndarray]:
  return demo.default_content(), demo.default_style()


def benchmark_shape(size: int, aspect: float) -> tuple[int, int]:
  """(H, W) for a size: H = size, W = round(size * aspect) (256 at 4:3 is 256x341)."""
  return size, max(16, round(size * aspect))


def build_problem(settings: BenchmarkSettings, shape: tuple[int, int], *,
                  weights: tuple[VGGWeights, str] | None = None,
                  images: tuple[np.ndarray, np.ndarray] | None = None) -> BenchmarkProblem:
  """`gatys.build_problem` for a content and a style (default: the demo pair) at `shape` (one full-image region,
  content relu4_2 and style relu1_1..relu5_1 unless `settings` say otherwise), started from a noisy content image
  so that every term has a non-zero gradient. bf16 swaps in a bfloat16 VGG; the targets stay those of the float32
  network."""
  weights, note = weights or load_benchmark_weights(settings)
  h, w = shape
  content_img, style_img = (image_io.resize(img, h, w) for img in (images or demo_images()))
  config = dataclasses.replace(settings.config(), size=max(h, w))
  problem = gatys.build_problem(content=content_img, styles=style_img, weights=weights, config=config)
  if problem.x0.shape[:2] != (h, w):
    raise NSTError(f"internal: stylize made a {problem.x0.shape[:2]} problem for {shape}")
  model = vgg.VGG(settings.arch, settings.layers, pooling=settings.pooling, dtype=DTYPES[settings.precision])
  terms_fn = problem.terms_fn
  if settings.precision != "fp32":
    guided = needs_guidance(build_regions(problem.plan, shape))
    terms_fn = make_loss_terms(model, weights.preprocessing, problem.plan, guided=guided)
  noise = np.random.default_rng(1).uniform(0.0, 1.0, content_img.shape)
  x0 = np.clip(0.8 * content_img + 0.2 * noise, 0.0, 1.0).astype(np.float32)
  return BenchmarkProblem(settings=settings, shape=(h, w), weights=weights, weights_note=note, model=model,
                          terms_fn=terms_fn, inputs=problem.inputs, x0=x0)



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

