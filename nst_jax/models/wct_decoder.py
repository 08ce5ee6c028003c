"""The decoders of universal style transfer (WCT, Li et al. 2017) and their checkpoint file.

One decoder per encoder level relu1_1 ... relu5_1: the decoder of relu_b_1 mirrors the encoder's convolutions up to
conv_b_1 (the last first), a ReLU after every convolution but the last, a 2x nearest-neighbour upsampling after
the mirror of each block's first convolution (where the encoder pooled), so that its output has the encoder
input's size. PhotoWCT's decoders (Li et al. 2018) are the same networks with max-unpooling in place of the
upsampling (`upsampling` "unpool"): each value goes back to where the encoder's max pooling found it, given the
encoder's pooling switches (`vgg.features_and_switches`), so edges stay where the content has them; a decoder
narrower than the encoder unpools each channel with the mean switches of a group of the encoder's channels
(`layers.channel_groups`). Inner channel counts are `width` / 64 of the encoder's; the input (the level's features, times a
constant `input_scale` that brings Caffe-scale activations to unit RMS) and the RGB output are fixed. Each decoder
is trained only to reconstruct images (`nst_jax.methods.wct.train`); the stylisation comes from the transform.

All levels of one encoder ship in one state file of `nst_jax.io.checkpoint` (format "nst_jax-wct-decoders"):
arrays "relu4_1/dec4_1/kernel", ...; metadata: the encoder's architecture, weights sha256 and source, and per level
its width, padding, input scale, upsampling and lineage (`info`: data, steps, command, held-out PSNR). Files with
only nearest-upsampling levels are version 1 (readers from before unpooling read them); a file with an unpooling
level is version 2, which such readers refuse rather than decode it with the wrong upsampling.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.errors import NSTError
from nst_jax.io import checkpoint
from nst_jax.models import layers, vgg

LEVELS = ("relu5_1", "relu4_1", "relu3_1", "relu2_1", "relu1_1")  # the cascade's order: coarse to fine
FORMAT = "nst_jax-wct-decoders"
FORMAT_VERSION = 2
NEAREST_FORMAT_VERSION = 1  # the version of files whose levels all upsample by nearest neighbour
UPSAMPLINGS = ("nearest", "unpool")


def _check_level(layer: str) -> None:
  if layer not in LEVELS:
    raise ValueError(f"unknown WCT level {layer!r}; expected one of {', '.join(LEVELS)}")


def encoder_convs(arch: str, layer: str) -> tuple[str, ...]:
  """The encoder's convolutions up to the level `layer` (relu_b_1), in forward order."""
  _check_level(layer)
  return tuple(vgg.params_for(arch, dict.fromkeys(vgg.conv_shapes(arch)), (layer,)))


def decoder_shapes(arch: str, layer: str, width: int) -> dict[str, tuple[tuple[int, int, int, int], tuple[int]]]:
  """{decoder conv: (HWIO kernel shape, bias shape)} of the decoder of `layer`, in forward order.

  The mirror 'decB_I' of each encoder convolution 'convB_I' up to `layer`, deepest first, maps its output channels
  back to its input channels; inner channel counts are `width` / 64 of the encoder's."""
  shapes = vgg.conv_shapes(arch)
  convs = encoder_convs(arch, layer)
  out = {}
  for name in reversed(convs):
    (kh, kw, cin, cout), _ = shapes[name]
    cin = 3 if cin == 3 else max(1, cin * width // 64)
    cout = cout if name == convs[-1] else max(1, cout * width // 64)
    out["dec" + name[4:]] = ((kh, kw, cout, cin), (cin,))
  return out


def upsample_after(arch: str, layer: str) -> dict[str, str]:
  """{decoder convolution: the encoder pooling it undoes} for those after which the image doubles in size: the
  mirrors of conv2_1 ... conv_b_1 (dec2_1: pool1, ...)."""
  return {"dec" + n[4:]: f"pool{int(n[4]) - 1}" for n in encoder_convs(arch, layer)
          if n.endswith("_1") and not n.startswith("conv1")}


def _variance_scale(name: str, names: Sequence[str]) -> float:
  """LeCun's fan-in scale, but 0.01 for the last convolution so that a fresh decoder's output starts near
  mid-gray instead of far outside the image range."""
  return 0.01 if name == names[-1] else 1.0


class Decoder(nn.Module):
  """Features of level `layer` (N, H, W, C) -> RGB image (N, H * s, W * s, 3), s the level's stride; not clipped.

  Attributes:
    arch: the encoder's architecture.
    layer: the level, relu1_1 ... relu5_1.
    width: inner channels as a fraction of the encoder's, times 64.
    padding: 'reflect' or 'zero'.
    input_scale: multiplies the input features.
    upsampling: 'nearest' (WCT) or 'unpool' (PhotoWCT: max-unpooling with the encoder's switches).
  """

  arch: str = "vgg16"
  layer: str = "relu4_1"
  width: int = 32
  padding: str = "reflect"
  input_scale: float = 1.0
  upsampling: str = "nearest"

  @nn.compact
  def __call__(self, x: jax.Array, switches: Mapping[str, jax.Array] | None = None) -> jax.Array:
    """`switches`: {pool name: `vgg.pool_switches`} of the encoded image, needed by 'unpool', ignored otherwise."""
    shapes = decoder_shapes(self.arch, self.layer, self.width)
    names = list(shapes)
    upsample = upsample_after(self.arch, self.layer)
    if self.upsampling not in UPSAMPLINGS:
      raise ValueError(f"upsampling must be one of {UPSAMPLINGS}, got {self.upsampling!r}")
    if self.upsampling == "unpool" and (switches is None or set(upsample.values()) - set(switches)):
      raise ValueError(f"unpooling decoder of {self.layer} needs the switches of {', '.join(upsample.values())}")
    x = x * self.input_scale
    for name in names:
      kshape, bshape = shapes[name]
      kernel = self.param(name + "/kernel", nn.initializers.lecun_normal(), kshape, jnp.float32)
      bias = self.param(name + "/bias", nn.initializers.zeros_init(), bshape, jnp.float32)
      x = layers.conv3x3(x, kernel, bias, self.padding)
      if name != names[-1]:
        x = nn.relu(x)
        if name in upsample and self.upsampling == "unpool":
          x = layers.max_unpool(x, layers.channel_groups(switches[upsample[name]], x.shape[-1]))
        elif name in upsample:
          x = layers.upsample_nearest(x)
    return x + 0.5


def init_decoder(arch: str, layer: str, width: int, *, seed: int = 0) -> dict[str, np.ndarray]:
  """Fresh parameters {'decB_I/kernel', 'decB_I/bias'} of the decoder of `layer` (float32 NumPy)."""
  shapes = decoder_shapes(arch, layer, width)
  names = list(shapes)
  return layers.truncated_normal_convs(shapes, seed=seed, variance_scale=lambda name: _variance_scale(name, names))


@dataclasses.dataclass
class LevelDecoder:
  """One level's trained decoder: flat parameters and the settings it was trained with.

  Attributes:
    params: flat {'decB_I/kernel', 'decB_I/bias'}.
    width: inner channels as a fraction of the encoder's, times 64.
    padding: 'reflect' or 'zero'.
    input_scale: multiplies the input features.
    info: its lineage (data, steps, command, held-out PSNR).
    upsampling: 'nearest' (WCT) or 'unpool' (PhotoWCT)."""

  params: dict
  width: int
  padding: str = "reflect"
  input_scale: float = 1.0
  info: dict = dataclasses.field(default_factory=dict)
  upsampling: str = "nearest"


def decode(level: LevelDecoder, feats: jax.Array, *, arch: str, layer: str,
           switches: Mapping[str, jax.Array] | None = None) -> jax.Array:
  """The image `level`'s decoder makes of `feats` (its parameters may be traced arrays).

  `switches` ({pool name: switches} of the image `feats` come from, `vgg.features_and_switches`) are needed by an
  unpooling decoder and ignored by a nearest-upsampling one."""
  return Decoder(arch, layer, level.width, level.padding, level.input_scale, level.upsampling).apply(
      {"params": level.params}, feats, switches)


@dataclasses.dataclass
class DecoderSet:
  """The decoders of one encoder, by level.

  Attributes:
    levels: {relu_b_1: LevelDecoder}; any non-empty subset of LEVELS.
    arch: the encoder's architecture.
    encoder_sha256: `VGGWeights.source_sha256` of the encoder weights they were trained with.
    encoder_source: their `VGGWeights.source`.
    info: free-form JSON-able record of the whole set.
  """

  levels: dict[str, LevelDecoder]
  arch: str
  encoder_sha256: str
  encoder_source: str
  info: dict = dataclasses.field(default_factory=dict)


def _checked_arrays(arrays: Mapping[str, Any], arch: str, layer: str, width: int, where: str) -> dict[str, np.ndarray]:
  return layers.checked_conv_arrays(arrays, decoder_shapes(arch, layer, width), where=where,
                                    what=f"WCT decoder {layer}")


def _checked_level_meta(spec: Any, layer: str, where: str) -> dict:
  if not isinstance(spec, dict):
    raise NSTError(f"{where}: WCT decoder metadata of {layer} is not an object")
  width, padding, scale = spec.get("width"), spec.get("padding"), spec.get("input_scale")
  upsampling = spec.get("upsampling", "nearest")  # files from before unpooling name none
  if not isinstance(width, int) or isinstance(width, bool) or width < 1:
    raise NSTError(f"{where}: WCT decoder {layer} width must be a positive integer, got {width!r}")
  if padding not in layers.PADDINGS:
    raise NSTError(f"{where}: WCT decoder {layer} padding must be one of {layers.PADDINGS}, got {padding!r}")
  if not isinstance(scale, (int, float)) or not 0 < scale < float("inf"):
    raise NSTError(f"{where}: WCT decoder {layer} input_scale must be a positive number, got {scale!r}")
  if upsampling not in UPSAMPLINGS:
    raise NSTError(f"{where}: WCT decoder {layer} upsampling must be one of {UPSAMPLINGS}, got {upsampling!r}")
  return {"width": width, "padding": padding, "input_scale": float(scale), "info": dict(spec.get("info", {})),
          "upsampling": upsampling}


def save_decoders(path: str | os.PathLike, decoders: DecoderSet, *, dtype: str = "float16") -> pathlib.Path:
  """Writes all levels to one compressed state file (arrays as float16 or float32).

  The same checks as `load_decoders` are made first."""
  where = str(path)
  if not decoders.levels:
    raise NSTError(f"{where}: a WCT decoder file needs at least one level")
  arrays, levels_meta = {}, {}
  for layer, level in decoders.levels.items():
    _check_level(layer)
    checked = _checked_arrays({k: np.asarray(v, np.float32) for k, v in level.params.items()}, decoders.arch, layer,
                              level.width, where)
    if dtype == "float16" and any(np.max(np.abs(a)) > np.finfo(np.float16).max for a in checked.values()):
      raise NSTError(f"{where}: WCT decoder {layer} overflows float16; save as float32")
    arrays.update({f"{layer}/{k}": a.astype(dtype) for k, a in checked.items()})
    levels_meta[layer] = _checked_level_meta({"width": level.width, "padding": level.padding,
                                              "input_scale": level.input_scale, "info": level.info,
                                              "upsampling": level.upsampling}, layer, where)
  meta = {"arch": decoders.arch, "encoder_sha256": decoders.encoder_sha256, "encoder_source": decoders.encoder_source,
          "levels": levels_meta, "info": decoders.info}
  unpool = any(spec["upsampling"] != "nearest" for spec in levels_meta.values())
  version = FORMAT_VERSION if unpool else NEAREST_FORMAT_VERSION
  return checkpoint.write(path, kind=FORMAT, version=version, meta=meta, arrays=arrays, compress=True)


def load_decoders(path: str | os.PathLike) -> DecoderSet:
  """Reads a WCT decoder file strictly: its metadata, then exactly each level's arrays, float16/32, finite."""
  path = pathlib.Path(path)
  where = str(path)
  if not path.is_file():
    raise NSTError(f"--decoders {where!r}: no such WCT decoder file")
  meta, arrays = checkpoint.read(path, what="WCT decoder")
  checkpoint.check_format(meta, path=path, kind=FORMAT, versions=(NEAREST_FORMAT_VERSION, FORMAT_VERSION),
                          what="WCT decoder")
  for field in ("arch", "encoder_sha256", "encoder_source", "levels"):
    if field not in meta:
      raise NSTError(f"{where}: WCT decoder metadata has no field {field!r}")
  if meta["arch"] not in vgg.ARCHS:
    raise NSTError(f"{where}: WCT decoders for an unsupported encoder {meta['arch']!r}")
  if not isinstance(meta["levels"], dict) or not meta["levels"]:
    raise NSTError(f"{where}: WCT decoder metadata names no levels")
  levels = {}
  for layer, spec in meta["levels"].items():
    if layer not in LEVELS:
      raise NSTError(f"{where}: unknown WCT level {layer!r}")
    spec = _checked_level_meta(spec, layer, where)
    own = {k[len(layer) + 1:]: a for k, a in arrays.items() if k.startswith(layer + "/")}
    checked = _checked_arrays(own, meta["arch"], layer, spec["width"], where)
    levels[layer] = LevelDecoder({k: a.astype(np.float32) for k, a in checked.items()}, **spec)
  stray = sorted(k for k in arrays if k.split("/", 1)[0] not in levels)
  if stray:
    raise NSTError(f"{where}: unexpected WCT decoder array {stray[0]!r}")
  return DecoderSet(levels, meta["arch"], str(meta["encoder_sha256"]), str(meta["encoder_source"]),
                    dict(meta.get("info", {})))
