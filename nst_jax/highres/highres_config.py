"""High-resolution settings (`HighresConfig`, validated when made) and the pyramid's scales and iterations."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax.numpy as jnp

from nst_jax.errors import NSTError
from nst_jax.objective.plan import ObjectivePlan

PRECISIONS = {"fp32": jnp.float32, "bf16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class HighresConfig:
  """High-resolution settings on top of a `StylizeConfig` (whose `size` is the final long side)."""

  start_size: int = 0                  # first pyramid scale's long side; 0: a single scale
  scale_step: float = 2.0
  scale_iterations: tuple[int, ...] = ()   # per scale, coarse to fine; empty: `iterations_rule`
  tile_size: int = 0                   # 0: automatic from the memory budget
  tile_halo: int | None = None         # None: `default_halo`
  tile_overlap: int = 16
  tile_batch: int = 1
  max_memory_gb: float = 0.0           # 0: 80% of one device's memory
  precision: str = "fp32"
  checkpoint_dir: str | None = None
  checkpoint_every: int = 0            # also save every N iterations within a scale (0: only after each scale)


  def __post_init__(self) -> None:
    object.__setattr__(self, "scale_iterations", tuple(self.scale_iterations))
    if self.start_size < 0 or (self.start_size and self.start_size < 16):
      raise NSTError(f"HighresConfig.start_size must be 0 (no pyramid) or at least 16, got {self.start_size}")
    if not (math.isfinite(self.scale_step) and self.scale_step > 1):
      raise NSTError(f"HighresConfig.scale_step must be a number > 1, got {self.scale_step}")
    if any(i < 1 for i in self.scale_iterations):
      raise NSTError(f"HighresConfig.scale_iterations must all be at least 1, got {list(self.scale_iterations)}")
    if self.tile_size < 0:
      raise NSTError(f"HighresConfig.tile_size must be >= 0 (0: automatic), got {self.tile_size}")
    if self.tile_halo is not None and self.tile_halo < 0:
      raise NSTError(f"HighresConfig.tile_halo must be >= 0, got {self.tile_halo}")
    if self.tile_overlap < 0:
      raise NSTError(f"HighresConfig.tile_overlap must be >= 0, got {self.tile_overlap}")
    if self.tile_batch < 1:
      raise NSTError(f"HighresConfig.tile_batch must be at least 1, got {self.tile_batch}")
    if not (math.isfinite(self.max_memory_gb) and self.max_memory_gb >= 0):
      raise NSTError(f"HighresConfig.max_memory_gb must be >= 0 (0: automatic), got {self.max_memory_gb}")
    if self.precision not in PRECISIONS:
      raise NSTError(f"HighresConfig.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
    if self.checkpoint_every < 0:
      raise NSTError(f"HighresConfig.checkpoint_every must be >= 0, got {self.checkpoint_every}")


def check_highres_request(hr: HighresConfig, plan: ObjectivePlan) -> None:
  """What a valid `HighresConfig` must also agree on with the objective it runs: the tiled engine computes the
  terms that support tiling (`registry`) and no octave layers."""
  config = plan.config
  if hr.start_size > config.size:
    raise NSTError(f"HighresConfig.start_size {hr.start_size} is larger than StylizeConfig.size {config.size}")
  sizes = scale_sizes(config.size, hr.start_size, hr.scale_step)
  if hr.scale_iterations and len(hr.scale_iterations) != len(sizes):
    raise NSTError(f"HighresConfig.scale_iterations has {len(hr.scale_iterations)} entries for {len(sizes)} scales "
                   f"({','.join(map(str, sizes))})")
  if not plan.style_loss.tiling:
    raise NSTError(f"the high-resolution engine uses Gram matrices; StylizeConfig.style_loss {plan.style_loss.name} "
                   "is not supported with it")
  if plan.octave_layers:
    raise NSTError(f"octave style layers ({plan.octave_layers[0]}) are not supported by the high-resolution "
                   "engine")
  for term in plan.image_terms:
    if not term.tiling:
      raise NSTError(f"StylizeConfig.{term.name}_weight is not supported by the high-resolution engine")


def scale_sizes(size: int, start_size: int, step: float) -> list[int]:
  """Long sides from `start_size` up to `size`, each `step` times the previous; the last is `size`."""
  if not start_size or start_size >= size:
    return [size]
  sizes = [start_size]
  while sizes[-1] * step < size * (1 - 1e-9):
    sizes.append(round(sizes[-1] * step))
  return sizes + [size]


def iterations_rule(iterations: int, sizes: Sequence[int]) -> list[int]:
  """Default iterations per scale: `iterations` at the first scale and, finer, fewer in proportion to the pixel
  count, so every scale costs about as much as the first (at least 1 each)."""
  return [max(1, math.ceil(iterations * (sizes[0] / s) ** 2)) for s in sizes]

