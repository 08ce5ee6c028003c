"""The FLOP model of one Gatys evaluation (and of one AdaIN stylisation); see the harness's docstring."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from nst_jax.objective.config import CONTENT_LAYERS, STYLE_LAYERS
from nst_jax.models import vgg


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


def gatys_flops(arch: str, shape: tuple[int, int], *, content_layers: Sequence[str] = CONTENT_LAYERS,
                style_layers: Sequence[str] = STYLE_LAYERS) -> float:
  """Total FLOPs of one Gatys eval of an (H, W) image (`flop_breakdown` summed)."""
  return sum(flop_breakdown(arch, shape, content_layers=content_layers, style_layers=style_layers).values())



def adain_flops(enc_params: Any, dec_params: Any, shape: tuple[int, int], style_shape: tuple[int, int]) -> float:
  """FLOPs of one AdaIN stylisation with these encoder and decoder parameters (teacher or student encoder, any
  decoder width, skips included): the encoder's convolutions up to conv4_1 and the decoder's at the content's size,
  and the encoder's at the style's, each 2 kh kw Cin Cout per output pixel (padding counted). A convolution named
  `convL_*` or `decL_*` runs at 1/2^(L-1) of the input size."""
  def kernels(params: Any, prefix: str) -> list[tuple[int, tuple[int, ...]]]:
    found = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
      key = "/".join(str(getattr(p, "key", p)) for p in path)
      name = key.split("/")[0]
      if key.endswith("kernel") and name.startswith(prefix):
        level = int(name[len(prefix)])
        if prefix == "dec" or level < 4 or name == "conv4_1":  # the encoder stops at relu4_1
          found.append((level, tuple(np.shape(leaf))))
    return found

  def cost(found: list[tuple[int, tuple[int, ...]]], hw: tuple[int, int]) -> float:
    return sum(2.0 * kh * kw * cin * cout * (hw[0] // 2 ** (level - 1)) * (hw[1] // 2 ** (level - 1))
               for level, (kh, kw, cin, cout) in found)

  encoder, decoder = kernels(enc_params, "conv"), kernels(dec_params, "dec")
  return cost(encoder, shape) + cost(decoder, shape) + cost(encoder, style_shape)
