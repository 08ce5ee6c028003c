"""Building blocks shared by the project's decoders: padded 3x3 convolutions, nearest-neighbour upsampling,
max-unpooling and the truncated-normal initial draw of a stack of convolutions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.errors import NSTError
from nst_jax.models import vgg

PADDINGS = ("reflect", "zero")

# Standard deviation of a unit normal truncated to [-2, 2]: dividing by it gives the truncated draw unit variance.
_TRUNCATED_STD = 0.87962566103423978


def reflect_conv3x3(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
  """3x3 convolution of the reflection-padded `x` (output the size of `x`).

  Computed as a zero-padded ('same') convolution of the padded input, cropped: the same values as a 'valid'
  convolution of the padded input, but XLA:CPU runs 'same' convolutions several times faster than 'valid' ones."""
  x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
  y = jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (1, 1), "SAME",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))[:, 1:-1, 1:-1]
  return y + bias.astype(x.dtype)


def conv3x3(x: jax.Array, kernel: jax.Array, bias: jax.Array, padding: str) -> jax.Array:
  """A 3x3, stride-1 convolution with `padding` 'reflect' or 'zero' (output the size of `x`)."""
  if padding == "zero":
    return vgg.conv3x3(x, kernel.astype(x.dtype)) + bias.astype(x.dtype)
  if padding == "reflect":
    return reflect_conv3x3(x, kernel, bias)
  raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")


def upsample_nearest(x: jax.Array) -> jax.Array:
  """2x nearest-neighbour upsampling of an NHWC batch."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def max_unpool(x: jax.Array, switches: jax.Array) -> jax.Array:
  """The inverse of a 2x2 max pooling given its switches: each value of `x` where `switches` mark it, 0 elsewhere.

  `x` is (N, h, w, C); `switches` (N, H, W, C) with h = H // 2, w = W // 2 (`vgg.pool_switches`: boolean, one per
  window, or any weights); the output is (N, H, W, C), the size the pooling took in, a dropped odd last row or column
  zero. Each value goes to its window's switch weights times itself: with one-hot switches, to the pooling's
  argmax."""
  n, h, w, _ = x.shape
  height, width = switches.shape[1:3]
  if (height // 2, width // 2) != (h, w) or switches.shape[-1] != x.shape[-1]:
    raise ValueError(f"switches of shape {switches.shape} do not belong to a pooling with output {x.shape}")
  up = jnp.pad(upsample_nearest(x), ((0, 0), (0, height - 2 * h), (0, width - 2 * w), (0, 0)))
  return up * switches.astype(x.dtype)


def channel_groups(switches: jax.Array, channels: int) -> jax.Array:
  """`switches` (N, H, W, C) reduced to `channels` channels: channel d is the mean of a contiguous group of them.

  Group d is the channels [d * C // channels, max(that + 1, (d + 1) * C // channels)): a partition when
  `channels` <= C (e.g. pairs when it is C / 2), a single channel otherwise. A decoder narrower than the encoder
  unpools each channel with its group's switches, the weights of a window summing to 1."""
  c = switches.shape[-1]
  if channels == c:
    return switches
  group = np.zeros((c, channels), np.float32)
  for d in range(channels):
    lo = d * c // channels
    group[lo: max(lo + 1, (d + 1) * c // channels), d] = 1.0
  return jnp.einsum("nhwc,cd->nhwd", switches.astype(jnp.float32), jnp.asarray(group / group.sum(0)))


def truncated_normal_convs(shapes: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]], *, seed: int,
                           variance_scale: Callable[[str], float]) -> dict[str, np.ndarray]:
  """Fresh parameters {'NAME/kernel', 'NAME/bias'} (float32 NumPy) for convolutions {NAME: (HWIO, bias shape)}.

  Kernels are fan-in variance-scaled normals truncated at two standard deviations (Flax's
  `variance_scaling(scale, "fan_in", "truncated_normal")`), biases zero; drawn layer by layer from one NumPy
  generator seeded by `seed`. NumPy rather than `Module.init`: XLA compiles JAX's threefry random bits slowly on a
  CPU (seconds per decoder configuration, more than a training step), and the draw needs no accelerator."""
  rng = np.random.default_rng(seed)
  params = {}
  for name, (kshape, bshape) in shapes.items():
    std = np.sqrt(variance_scale(name) / np.prod(kshape[:-1])) / _TRUNCATED_STD
    draw = rng.standard_normal(kshape)
    outside = np.abs(draw) > 2.0
    while outside.any():  # rejection sampling: redraw the values outside [-2, 2]
      draw[outside] = rng.standard_normal(int(outside.sum()))
      outside = np.abs(draw) > 2.0
    params[name + "/kernel"] = (std * draw).astype(np.float32)
    params[name + "/bias"] = np.zeros(bshape, np.float32)
  return params


def checked_conv_arrays(arrays: Mapping[str, Any], shapes: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]], *,
                        where: str, what: str) -> dict[str, np.ndarray]:
  """Exactly the arrays {'NAME/kernel', 'NAME/bias'} of convolutions {NAME: (kernel shape, bias shape)}.

  Each must be float16 or float32, of its shape and finite; otherwise NSTError "`where`: `what` array 'NAME/...'
  ..." for the first fault."""
  expected = {}
  for name, (kshape, bshape) in shapes.items():
    expected[f"{name}/kernel"], expected[f"{name}/bias"] = tuple(kshape), tuple(bshape)
  missing = sorted(set(expected) - set(arrays))
  unexpected = sorted(set(arrays) - set(expected))
  if missing:
    raise NSTError(f"{where}: {what} array {missing[0]!r} is missing")
  if unexpected:
    raise NSTError(f"{where}: unexpected {what} array {unexpected[0]!r}")
  out = {}
  for key, shape in expected.items():
    arr = np.asarray(arrays[key])
    if arr.dtype not in (np.float16, np.float32):
      raise NSTError(f"{where}: {what} array {key!r} is {arr.dtype}, expected float16 or float32")
    if tuple(arr.shape) != shape:
      raise NSTError(f"{where}: {what} array {key!r} has shape {tuple(arr.shape)}, expected {shape}")
    if not np.all(np.isfinite(arr)):
      raise NSTError(f"{where}: {what} array {key!r} is not finite")
    out[key] = arr
  return out
