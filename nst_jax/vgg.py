"""VGG16 / VGG19 feature stacks in Flax Linen, with the standard layer names.

The model maps a *preprocessed* NHWC batch to a dict of the requested activations. Preprocessing (channel order,
input range, mean/std) belongs to the weight source and lives with the weights (`nst_jax.weights.Preprocessing`),
not here. Nothing past the deepest requested layer is computed (or even needs parameters).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

Arch = Literal["vgg16", "vgg19"]

# Convolutions per block; every conv is 3x3, stride 1, padding 1, followed by ReLU; every block ends in a 2x2 pool.
_BLOCK_CONVS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
_BLOCK_WIDTHS = (64, 128, 256, 512, 512)
ARCHS: tuple[str, ...] = tuple(_BLOCK_CONVS)


def layer_names(arch: str) -> tuple[str, ...]:
  """All layer names of `arch` in forward order: conv1_1, relu1_1, ..., pool5."""
  _check_arch(arch)
  names = []
  for block, num_convs in enumerate(_BLOCK_CONVS[arch], start=1):
    for i in range(1, num_convs + 1):
      names += [f"conv{block}_{i}", f"relu{block}_{i}"]
    names.append(f"pool{block}")
  return tuple(names)


def conv_shapes(arch: str) -> dict[str, tuple[tuple[int, int, int, int], tuple[int]]]:
  """{conv name: (kernel shape HWIO, bias shape)} for every convolution of `arch`, in forward order."""
  _check_arch(arch)
  shapes = {}
  in_ch = 3
  for block, (num_convs, width) in enumerate(zip(_BLOCK_CONVS[arch], _BLOCK_WIDTHS), start=1):
    for i in range(1, num_convs + 1):
      shapes[f"conv{block}_{i}"] = ((3, 3, in_ch, width), (width,))
      in_ch = width
  return shapes


def _check_arch(arch: str) -> None:
  if arch not in _BLOCK_CONVS:
    raise ValueError(f"unknown VGG architecture {arch!r}; expected one of {', '.join(ARCHS)}")


def check_layers(arch: str, layers: Sequence[str]) -> None:
  """Raises ValueError naming the first layer that `arch` does not have."""
  known = layer_names(arch)
  for name in layers:
    if name not in known:
      raise ValueError(f"{arch} has no layer {name!r}; layers are {', '.join(known)}")


def deepest_layer(arch: str, layers: Sequence[str]) -> str:
  """The requested layer that comes last in the forward order."""
  check_layers(arch, layers)
  order = layer_names(arch)
  return max(layers, key=order.index)


def pool(x: jax.Array, kind: str) -> jax.Array:
  """2x2, stride-2 pooling ('max' as trained, 'avg' as Gatys et al. recommend for synthesis); floors odd sizes."""
  if kind == "max":
    return nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
  if kind == "avg":
    return nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")
  raise ValueError(f"unknown pooling {kind!r}; expected 'max' or 'avg'")


class VGG(nn.Module):
  """VGG feature extractor returning `{layer name: NHWC activation}` for `outputs`.

  Attributes:
    arch: 'vgg16' or 'vgg19'.
    outputs: names of the layers to return (any of `layer_names(arch)`).
    pooling: 'max' or 'avg'.
    dtype: computation dtype (parameters stay float32); bf16 halves activation memory.
  """

  arch: str
  outputs: tuple[str, ...]
  pooling: str = "max"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    last = deepest_layer(self.arch, self.outputs)
    shapes = conv_shapes(self.arch)
    wanted = set(self.outputs)
    feats: dict[str, jax.Array] = {}
    x = x.astype(self.dtype)
    for name in layer_names(self.arch):
      if name.startswith("conv"):
        features = shapes[name][1][0]
        x = nn.Conv(features, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, name=name)(x)
      elif name.startswith("relu"):
        x = nn.relu(x)
      else:
        x = pool(x, self.pooling)
      if name in wanted:
        feats[name] = x
      if name == last:
        break
    return feats


def params_for(arch: str, params: dict, outputs: Sequence[str]) -> dict:
  """The subset of a full parameter dict that `VGG(arch, outputs)` uses (convs up to the deepest output)."""
  order = layer_names(arch)
  last = order.index(deepest_layer(arch, outputs))
  used = [n for n in order[: last + 1] if n.startswith("conv")]
  return {name: params[name] for name in used}


def estimate_training_bytes(arch: str, shape: tuple[int, int], outputs: Sequence[str],
                            bytes_per_value: int = 4) -> int:
  """Rough peak memory of one forward + backward pass for an (H, W) image: every stored activation up to the
  deepest requested layer (kept for the backward pass) plus a same-sized gradient buffer, plus parameters."""
  h, w = shape
  order = layer_names(arch)
  last = order.index(deepest_layer(arch, outputs))
  shapes = conv_shapes(arch)
  channels = 3
  activations = h * w * 3
  param_values = 0
  for name in order[: last + 1]:
    if name.startswith("conv"):
      channels = shapes[name][1][0]
      param_values += math.prod(shapes[name][0]) + channels
    elif name.startswith("pool"):
      h, w = h // 2, w // 2
    activations += h * w * channels
  return bytes_per_value * (2 * activations + 3 * param_values)
