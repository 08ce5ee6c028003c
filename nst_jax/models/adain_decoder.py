"""The AdaIN decoder (Huang & Belongie 2017) and its checkpoint file.

The decoder mirrors the encoder up to relu4_1 (reflection-padded 3x3 convolutions, nearest-neighbour upsampling
instead of pooling; `width` / 64 of the paper's inner channels). Its checkpoint (`save_decoder` / `load_decoder`, a
state file of `nst_jax.io.checkpoint` with format "nst_jax-adain-decoder") names the encoder architecture and the
sha256 and source of the encoder weights it was trained with, and `nst_jax.weights.adain_decoders.check_encoder`
refuses any other pairing (there, because it reads VGG weights: models sit below the weights layer). Format
version 2 may also carry a student encoder (`nst_jax.models.adain_student`) that replaces the VGG encoder at
inference: such a file is a whole model on its own.
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
from nst_jax.models import adain_student, layers, vgg

ENCODER_LAYER = "relu4_1"
DECODER_FORMAT = "nst_jax-adain-decoder"
DECODER_FORMAT_VERSION = 2  # 1: decoder only; 2: may hold a student encoder (arrays 'student/convX_Y/...')
_STUDENT_PREFIX = "student/"


def encoder_layers(arch: str) -> tuple[str, ...]:
  """The encoder's convolutions up to relu4_1, in forward order."""
  return tuple(vgg.params_for(arch, dict.fromkeys(vgg.conv_shapes(arch)), (ENCODER_LAYER,)))


def decoder_shapes(arch: str, width: int = 64,
                   skip_width: int = 0) -> dict[str, tuple[tuple[int, int, int, int], tuple[int]]]:
  """{decoder conv: (HWIO kernel shape, bias shape)}, in forward order.

  The decoder mirrors the encoder's convolutions up to relu4_1 (conv4_1 first, conv1_1 last); the mirror of
  conv_b_i maps the channels of its output back to those of its input. Inner channel counts scale with
  `width` / 64 (64 = the paper's decoder); the input (relu4_1's 512 channels) and the RGB output are fixed. With
  `skip_width` > 0 the first convolution of blocks 3, 2 and 1 also takes the encoder's relu3_1, relu2_1, relu1_1
  (AdaIN-normalised, `skip_layers`) of an encoder of that width (64: the VGG itself).
  """
  shapes = vgg.conv_shapes(arch)
  skips = skip_layers(arch) if skip_width else {}
  out = {}
  for name in reversed(encoder_layers(arch)):
    (kh, kw, cin, cout), _ = shapes[name]
    cin = 3 if cin == 3 else max(1, cin * width // 64)
    cout = cout if name == "conv4_1" else max(1, cout * width // 64)
    if "dec" + name[4:] in skips:
      cout += max(1, shapes[skips["dec" + name[4:]].replace("relu", "conv")][1][0] * skip_width // 64)
    out["dec" + name[4:]] = ((kh, kw, cout, cin), (cin,))
  return out


def skip_layers(arch: str) -> dict[str, str]:
  """{decoder conv: encoder layer}: the first convolution of each upsampled block and the relu_b_1 it takes."""
  names = ["dec" + n[4:] for n in reversed(encoder_layers(arch))]
  return {names[i + 1]: "relu" + names[i + 1][3] + "_1" for i, n in enumerate(names) if n in _UPSAMPLE_AFTER}


_UPSAMPLE_AFTER = ("dec4_1", "dec3_1", "dec2_1")


PADDINGS = layers.PADDINGS
upsample_nearest = layers.upsample_nearest


class Decoder(nn.Module):
  """relu4_1 features (N, H, W, 512) -> RGB image (N, 8H, 8W, 3) in [0, 1] (not clipped while training).

  Reflection padding, ReLU after every convolution but the last, 2x nearest upsampling after the mirror of each
  block's first convolution (conv4_1, conv3_1, conv2_1), as in the paper's decoder. padding='zero' uses zero
  padding instead: a thin decoder's pad and crop copies cost as much as its convolutions on a CPU.
  """

  arch: str = "vgg16"
  width: int = 64
  padding: str = "reflect"
  skip_width: int = 0
  input_scale: float = 1.0  # multiplies every input (relu4_1 and skips): Caffe-scale features have RMS 10-45

  @nn.compact
  def __call__(self, x: jax.Array, valid: jax.Array | None = None,
               skips: Mapping[str, jax.Array] | None = None) -> jax.Array:
    """`valid` (at the input's resolution; zero padding only) zeroes every activation outside the valid region,
    so that a padded input decodes, inside it, exactly as the region alone would. `skips`: {relu_b_1: features}
    for a decoder with `skip_width` (see `decoder_shapes`)."""
    if valid is not None and self.padding != "zero":
      raise ValueError("masked decoding needs padding='zero'")
    if bool(self.skip_width) != (skips is not None):
      raise ValueError("a decoder with skip_width takes skips, and only it")
    shapes = decoder_shapes(self.arch, self.width, self.skip_width)
    into = skip_layers(self.arch) if self.skip_width else {}
    names = list(shapes)
    x = x * self.input_scale
    for name in names:
      if name in into:
        skip = skips[into[name]] * self.input_scale
        x = jnp.concatenate([x, skip if valid is None else skip * valid], axis=-1)
      kshape, bshape = shapes[name]
      init = nn.initializers.variance_scaling(_variance_scale(name, names), "fan_in", "truncated_normal")
      kernel = self.param(name + "/kernel", init, kshape, jnp.float32)
      bias = self.param(name + "/bias", nn.initializers.zeros_init(), bshape, jnp.float32)
      if self.padding == "zero":
        x = vgg.conv3x3(x, kernel.astype(x.dtype)) + bias.astype(x.dtype)
      else:
        x = layers.reflect_conv3x3(x, kernel, bias)
      if name != names[-1]:
        x = nn.relu(x)
        if valid is not None:
          x = x * valid
        if name in _UPSAMPLE_AFTER:
          x = upsample_nearest(x)
          valid = None if valid is None else upsample_nearest(valid)
    return x + 0.5  # a freshly initialised decoder starts around mid-gray, inside the image range


def _variance_scale(name: str, names: Sequence[str]) -> float:
  """The fan-in variance scale of a decoder convolution's initial kernel: LeCun's (1) but for the last one, which
  starts 10x smaller (variance 0.01) so that the first outputs stay near mid-gray instead of far outside the image
  range, whose huge initial losses otherwise kill most decoder ReLUs in the first steps."""
  return 0.01 if name == names[-1] else 1.0


def init_decoder(arch: str, width: int = 64, *, seed: int = 0, skip_width: int = 0) -> dict:
  """Fresh decoder parameters: flat {'decX_Y/kernel', 'decX_Y/bias'} float32 NumPy arrays.

  Drawn from the distribution of `Decoder`'s initialisers (`layers.truncated_normal_convs`)."""
  shapes = decoder_shapes(arch, width, skip_width)
  names = list(shapes)
  return layers.truncated_normal_convs(shapes, seed=seed, variance_scale=lambda name: _variance_scale(name, names))


def decode(dec_params: Mapping, feats: jax.Array, *, arch: str, width: int, padding: str = "reflect",
           valid: jax.Array | None = None, skips: Mapping[str, jax.Array] | None = None,
           skip_width: int = 0, input_scale: float = 1.0) -> jax.Array:
  """The decoder's RGB image (N, 8H, 8W, 3) of relu4_1 features (and, with `skip_width`, of the `skips`).

  Args:
    dec_params: flat {'decX_Y/kernel', 'decX_Y/bias'} parameters.
    feats: (N, H, W, 512) relu4_1 features, AdaIN-normalised at inference.
    arch: the encoder's architecture.
    width: the decoder's width (64 = the paper's).
    padding: 'reflect' (the paper's) or 'zero'.
    valid: (1 or N, H, W, 1) 1 on the image, 0 on padding (zero padding only): the features are multiplied by it and
      every activation outside the image is zeroed, so a padded input decodes as the unpadded one would.
    skips: {relu3_1, relu2_1, relu1_1: AdaIN-normalised encoder features} for a decoder with skips.
    skip_width: the width of the encoder the skips come from (0: no skips).
    input_scale: multiplies the decoder's inputs.
  """
  return Decoder(arch, width, padding, skip_width, input_scale).apply(
      {"params": dec_params}, feats if valid is None else feats * valid, valid, skips)


@dataclasses.dataclass
class DecoderCheckpoint:
  """A trained decoder and the identity of the encoder it belongs to.

  Attributes:
    params: flat {'decX_Y/kernel': float32 array, ...}.
    arch: encoder architecture.
    width: decoder width (64 = the paper's).
    encoder_sha256: `VGGWeights.source_sha256` of the encoder weights it was trained with.
    encoder_source: their `VGGWeights.source`.
    info: free-form JSON-able record (training data, steps, command, ...).
    padding: the decoder's convolution padding, 'reflect' (the paper's) or 'zero'.
    input_scale: a constant that multiplies the decoder's inputs (1 for the paper's decoder).
    skip_width: > 0 for a decoder that also takes the AdaIN-normalised relu3_1, relu2_1, relu1_1 of its encoder
      (whose width this is: the student's, or 64 for the VGG); see `decoder_shapes`.
    student: a student encoder that feeds the decoder instead of the VGG encoder named above (which then is only
      its teacher and the training loss network), or None.
  """

  params: dict
  arch: str
  width: int
  encoder_sha256: str
  encoder_source: str
  info: dict = dataclasses.field(default_factory=dict)
  student: adain_student.Student | None = None
  padding: str = "reflect"
  skip_width: int = 0
  input_scale: float = 1.0


def _checked_decoder_arrays(arrays: Mapping[str, Any], arch: str, width: int, where: str,
                            skip_width: int = 0) -> dict[str, np.ndarray]:
  return layers.checked_conv_arrays(arrays, decoder_shapes(arch, width, skip_width), where=where, what="decoder")


def save_decoder(path: str | os.PathLike, ckpt: DecoderCheckpoint, *, dtype: str = "float16") -> pathlib.Path:
  """Writes the decoder state file (arrays as float16 or float32, compressed), after the checks `load_decoder` makes.

  Format version 1 unless the checkpoint needs version 2's fields (a student, skips, zero padding, an input scale)."""
  path = pathlib.Path(path)
  arrays = _checked_decoder_arrays({k: np.asarray(v, np.float32) for k, v in ckpt.params.items()}, ckpt.arch,
                                   ckpt.width, str(path), ckpt.skip_width)
  version = 1 if ckpt.student is None else DECODER_FORMAT_VERSION
  meta = {"arch": ckpt.arch, "width": int(ckpt.width), "encoder_layer": ENCODER_LAYER,
          "encoder_sha256": ckpt.encoder_sha256, "encoder_source": ckpt.encoder_source, "info": ckpt.info}
  if ckpt.padding not in PADDINGS:
    raise NSTError(f"{path}: decoder padding must be one of {PADDINGS}, got {ckpt.padding!r}")
  if ckpt.padding != "reflect":
    version, meta["padding"] = DECODER_FORMAT_VERSION, ckpt.padding
  if ckpt.input_scale != 1.0:
    version, meta["input_scale"] = DECODER_FORMAT_VERSION, float(ckpt.input_scale)
  if ckpt.skip_width:
    version, meta["skip_width"] = DECODER_FORMAT_VERSION, int(ckpt.skip_width)
    if ckpt.skip_width != (ckpt.student.width if ckpt.student is not None else 64):
      raise NSTError(f"{path}: skip_width {ckpt.skip_width} is not the width of the decoder's encoder")
  if ckpt.student is not None:
    student = ckpt.student
    adain_student.check_params(student.params, student.width, str(path))
    if student.teacher_sha256 != ckpt.encoder_sha256:
      raise NSTError(f"{path}: the student encoder was distilled from another teacher than the decoder's encoder")
    arrays.update({_STUDENT_PREFIX + k: np.asarray(v, np.float32) for k, v in student.params.items()})
    meta["student"] = {"width": student.width, "channels": student.channels, "info": student.info,
                       "preprocessing": adain_student.preprocessing_dict(student.preprocessing)}
  if dtype == "float16" and any(np.max(np.abs(a)) > np.finfo(np.float16).max for a in arrays.values()):
    raise NSTError(f"{path}: parameters overflow float16; save as float32")
  return checkpoint.write(path, kind=DECODER_FORMAT, version=version, meta=meta, compress=True,
                          arrays={k: a.astype(dtype) for k, a in arrays.items()})


def load_decoder(path: str | os.PathLike) -> DecoderCheckpoint:
  """Reads a decoder state file strictly: its metadata, then exactly the arrays of its width, float16/32, finite."""
  path = pathlib.Path(path)
  where = str(path)
  if not path.is_file():
    raise NSTError(f"--decoder {where!r}: no such decoder file")
  meta, arrays = checkpoint.read(path, what="AdaIN decoder")
  version = checkpoint.check_format(meta, path=path, kind=DECODER_FORMAT, versions=(1, DECODER_FORMAT_VERSION),
                                    what="AdaIN decoder")
  for field in ("arch", "width", "encoder_layer", "encoder_sha256", "encoder_source", "info"):
    if field not in meta:
      raise NSTError(f"{where}: decoder metadata has no field {field!r}")
  if meta["arch"] not in vgg.ARCHS or meta["encoder_layer"] != ENCODER_LAYER:
    raise NSTError(f"{where}: decoder for an unsupported encoder {meta['arch']!r}/{meta['encoder_layer']!r}")
  if not isinstance(meta["width"], int) or meta["width"] < 1:
    raise NSTError(f"{where}: decoder width must be a positive integer, got {meta['width']!r}")
  student_arrays = {k[len(_STUDENT_PREFIX):]: arrays.pop(k) for k in list(arrays) if k.startswith(_STUDENT_PREFIX)}
  student = None
  if version >= 2 and "student" in meta:
    spec = meta["student"]
    if not isinstance(spec, dict) or not isinstance(spec.get("width"), int) or not isinstance(spec.get("channels"),
                                                                                            dict):
      raise NSTError(f"{where}: malformed student encoder metadata")
    adain_student.check_params(student_arrays, spec["width"], f"{where} (student encoder)")
    student = adain_student.Student({k: a.astype(np.float32) for k, a in student_arrays.items()}, spec["width"],
                                    {k: list(v) for k, v in spec["channels"].items()}, meta["arch"],
                                    str(meta["encoder_sha256"]), dict(spec.get("info", {})),
                                    adain_student.preprocessing_from(spec.get("preprocessing")))
  elif student_arrays:
    raise NSTError(f"{where}: unexpected decoder array {_STUDENT_PREFIX + sorted(student_arrays)[0]!r}")
  skip_width = meta.get("skip_width", 0)
  if not isinstance(skip_width, int) or skip_width < 0:
    raise NSTError(f"{where}: decoder skip_width must be a non-negative integer, got {skip_width!r}")
  checked = _checked_decoder_arrays(arrays, meta["arch"], meta["width"], where, skip_width)
  padding, input_scale = meta.get("padding", "reflect"), meta.get("input_scale", 1.0)
  if not isinstance(input_scale, (int, float)) or not 0 < input_scale < float("inf"):
    raise NSTError(f"{where}: decoder input_scale must be a positive number, got {input_scale!r}")
  if padding not in PADDINGS:
    raise NSTError(f"{where}: decoder padding must be one of {PADDINGS}, got {padding!r}")
  return DecoderCheckpoint(params={k: a.astype(np.float32) for k, a in checked.items()}, arch=meta["arch"],
                           width=meta["width"], encoder_sha256=str(meta["encoder_sha256"]),
                           encoder_source=str(meta["encoder_source"]), info=dict(meta["info"]), student=student,
                           padding=padding, skip_width=skip_width, input_scale=float(input_scale))


DEFAULT_DECODER = "adain-decoder-hed-vgg16"  # the shipped decoder, by name (`weights.adain_decoders`)
