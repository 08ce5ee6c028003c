"""Building blocks shared by the project's decoders: padded 3x3 convolutions, nearest-neighbour upsampling and the
truncated-normal initial draw of a stack of convolutions."""

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
