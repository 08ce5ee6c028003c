"""How RGB images in [0, 1] become the input a set of VGG weights was trained on (channel order, scale, mean, std).

The preprocessing belongs to the weight source, not to the network: the same `nst_jax.models.vgg.VGG` serves
Caffe-style (BGR, 0..255, mean) and torchvision-style (RGB, mean/std) weights.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from nst_jax.errors import WeightsError


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """How RGB images in [0, 1] become the input a set of weights was trained on.

  Attributes:
    channel_order: 'RGB' or 'BGR', the channel order the network expects.
    input_scale: the [0, 1] RGB image is multiplied by this first (255 for Caffe-style nets, 1 for torchvision).
    mean: subtracted after scaling, per channel in `channel_order`, in scaled units.
    std: the difference is divided by this, per channel in `channel_order`.
  """

  channel_order: str
  input_scale: float
  mean: tuple[float, float, float]
  std: tuple[float, float, float]

  def __post_init__(self) -> None:
    if self.channel_order not in ("RGB", "BGR"):
      raise WeightsError(f"preprocessing channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
    for field in ("mean", "std"):
      values = tuple(float(v) for v in getattr(self, field))
      if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise WeightsError(f"preprocessing {field} must be 3 finite numbers, got {getattr(self, field)!r}")
      object.__setattr__(self, field, values)
    scale = float(self.input_scale)
    if not (math.isfinite(scale) and scale > 0):
      raise WeightsError(f"preprocessing input_scale must be a positive number, got {self.input_scale!r}")
    object.__setattr__(self, "input_scale", scale)
    if any(s == 0 for s in self.std):
      raise WeightsError(f"preprocessing std must be non-zero, got {self.std!r}")

  def apply(self, rgb01: Any) -> jnp.ndarray:
    """Network input of [..., 3] RGB in [0, 1] (NumPy or JAX). Pure jnp, so it jits and differentiates."""
    x = jnp.asarray(rgb01)
    if not jnp.issubdtype(x.dtype, jnp.floating):
      x = x.astype(jnp.float32)
    check_channels(x)
    x = x * jnp.asarray(self.input_scale, x.dtype)
    if self.channel_order == "BGR":
      x = x[..., ::-1]
    return (x - jnp.asarray(self.mean, x.dtype)) / jnp.asarray(self.std, x.dtype)

  def invert(self, x: Any) -> jnp.ndarray:
    """[..., 3] RGB in [0, 1] (not clipped) of a network input; the inverse of `apply`."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
      x = x.astype(jnp.float32)
    check_channels(x)
    x = x * jnp.asarray(self.std, x.dtype) + jnp.asarray(self.mean, x.dtype)
    if self.channel_order == "BGR":
      x = x[..., ::-1]
    return x / jnp.asarray(self.input_scale, x.dtype)

  def to_dict(self) -> dict[str, Any]:
    """The JSON-able dict of the four fields, as weight and decoder files store it."""
    return {"channel_order": self.channel_order, "input_scale": self.input_scale, "mean": list(self.mean),
            "std": list(self.std)}

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> Preprocessing:
    """The `Preprocessing` of `to_dict`'s dict; WeightsError unless it has exactly the four fields, well typed."""
    fields = {f.name for f in dataclasses.fields(cls)}
    if not isinstance(d, Mapping) or set(d) != fields:
      got = sorted(d) if isinstance(d, Mapping) else type(d).__name__
      raise WeightsError(f"preprocessing must have exactly the fields {sorted(fields)}, got {got}")
    try:
      return cls(str(d["channel_order"]), float(d["input_scale"]), tuple(d["mean"]), tuple(d["std"]))
    except (TypeError, ValueError) as e:
      raise WeightsError(f"bad preprocessing {dict(d)!r}: {e}") from None


def check_channels(x: jnp.ndarray) -> None:
  """Raises ValueError unless `x` has 3 channels last."""
  if x.ndim == 0 or x.shape[-1] != 3:
    raise ValueError(f"expected an image with 3 channels last, got shape {x.shape}")


# Keras' and Caffe's VGG: BGR, 0..255, ImageNet mean subtracted, no scaling.
CAFFE_VGG = Preprocessing("BGR", 255.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0))
TORCHVISION = Preprocessing("RGB", 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# HED (Xie & Tu) was trained in Caffe with its own BSDS-era mean.
HED_CAFFE = Preprocessing("BGR", 255.0, (104.00699, 116.66877, 122.67892), (1.0, 1.0, 1.0))
