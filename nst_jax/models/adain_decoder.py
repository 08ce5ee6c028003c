"""The AdaIN decoder (Huang & Belongie 2017): the VGG encoder up to relu4_1 mirrored, and its checkpoint.

The decoder maps relu4_1 features back to an image: reflection-padded 3x3 convolutions, nearest-neighbour upsampling
instead of pooling. It is tied to the encoder it was trained with: its checkpoint (`save_decoder` / `load_decoder`,
a state file of `nst_jax.io.checkpoint` with format "nst_jax-adain-decoder") names the encoder architecture and the
sha256 and source of the encoder weights, and `check_encoder` refuses any other pairing.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.errors import NSTError
from nst_jax.io import checkpoint
from nst_jax.models import vgg
from nst_jax.weights.format import VGGWeights
from nst_jax.weights.store import weights_dir

ENCODER_LAYER = "relu4_1"
DECODER_FORMAT = "nst_jax-adain-decoder"
DECODER_FORMAT_VERSION = 1
DEFAULT_DECODER = "adain-decoder-hed-vgg16"
_REPO_WEIGHTS = pathlib.Path(__file__).resolve().parents[2] / "weights"


def encoder_layers(arch: str) -> tuple[str, ...]:
  """The encoder's convolutions up to relu4_1, in forward order."""
  return tuple(vgg.params_for(arch, dict.fromkeys(vgg.conv_shapes(arch)), (ENCODER_LAYER,)))


def decoder_shapes(arch: str, width: int = 64) -> dict[str, tuple[tuple[int, int, int, int], tuple[int]]]:
  """{decoder conv: (HWIO kernel shape, bias shape)}, in forward order.

  The decoder mirrors the encoder's convolutions up to relu4_1 (conv4_1 first, conv1_1 last); the mirror of
  conv_b_i maps the channels of its output back to those of its input. Inner channel counts scale with
  `width` / 64 (64 = the paper's decoder); the input (relu4_1's 512 channels) and the RGB output are fixed.
  """
  shapes = vgg.conv_shapes(arch)
  out = {}
  for name in reversed(encoder_layers(arch)):
    (kh, kw, cin, cout), _ = shapes[name]
    cin = 3 if cin == 3 else max(1, cin * width // 64)
    cout = cout if name == "conv4_1" else max(1, cout * width // 64)
    out["dec" + name[4:]] = ((kh, kw, cout, cin), (cin,))
  return out


def _reflect_conv(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
  x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
  y = jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (1, 1), "VALID",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y + bias.astype(x.dtype)


def upsample_nearest(x: jax.Array) -> jax.Array:
  """2x nearest-neighbour upsampling of an NHWC batch."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class Decoder(nn.Module):
  """relu4_1 features (N, H, W, 512) -> RGB image (N, 8H, 8W, 3) in [0, 1] (not clipped while training).

  Reflection padding, ReLU after every convolution but the last, 2x nearest upsampling after the mirror of each
  block's first convolution (conv4_1, conv3_1, conv2_1), as in the paper's decoder.
  """

  arch: str = "vgg16"
  width: int = 64

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    shapes = decoder_shapes(self.arch, self.width)
    names = list(shapes)
    for name in names:
      kshape, bshape = shapes[name]
      # The last convolution starts 10x smaller than LeCun's scale: the first outputs stay near mid-gray instead of
      # far outside the image range, whose huge initial losses otherwise kill most decoder ReLUs in the first steps.
      init = nn.initializers.variance_scaling(0.01 if name == names[-1] else 1.0, "fan_in", "truncated_normal")
      kernel = self.param(name + "/kernel", init, kshape, jnp.float32)
      bias = self.param(name + "/bias", nn.initializers.zeros_init(), bshape, jnp.float32)
      x = _reflect_conv(x, kernel, bias)
      if name != names[-1]:
        x = nn.relu(x)
        if name in ("dec4_1", "dec3_1", "dec2_1"):
          x = upsample_nearest(x)
    return x + 0.5  # a freshly initialised decoder starts around mid-gray, inside the image range


def init_decoder(arch: str, width: int = 64, *, seed: int = 0) -> dict:
  """Fresh decoder parameters: flat {'decX_Y/kernel': ..., 'decX_Y/bias': ...}."""
  x = jnp.zeros((1, 1, 1, 512), jnp.float32)
  return jax.device_get(jax.jit(Decoder(arch, width).init)(jax.random.PRNGKey(seed), x)["params"])



def decode(dec_params: Mapping, feats: jax.Array, *, arch: str, width: int) -> jax.Array:
  return Decoder(arch, width).apply({"params": dec_params}, feats)



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
  """

  params: dict
  arch: str
  width: int
  encoder_sha256: str
  encoder_source: str
  info: dict = dataclasses.field(default_factory=dict)


def _checked_decoder_arrays(arrays: Mapping[str, Any], arch: str, width: int, where: str) -> dict[str, np.ndarray]:
  expected = {}
  for name, (kshape, bshape) in decoder_shapes(arch, width).items():
    expected[f"{name}/kernel"], expected[f"{name}/bias"] = kshape, bshape
  missing = sorted(set(expected) - set(arrays))
  unexpected = sorted(set(arrays) - set(expected))
  if missing:
    raise NSTError(f"{where}: decoder array {missing[0]!r} is missing")
  if unexpected:
    raise NSTError(f"{where}: unexpected decoder array {unexpected[0]!r}")
  out = {}
  for key, shape in expected.items():
    arr = np.asarray(arrays[key])
    if arr.dtype not in (np.float16, np.float32):
      raise NSTError(f"{where}: decoder array {key!r} is {arr.dtype}, expected float16 or float32")
    if tuple(arr.shape) != tuple(shape):
      raise NSTError(f"{where}: decoder array {key!r} has shape {tuple(arr.shape)}, expected {tuple(shape)}")
    if not np.all(np.isfinite(arr)):
      raise NSTError(f"{where}: decoder array {key!r} is not finite")
    out[key] = arr
  return out


def save_decoder(path: str | os.PathLike, ckpt: DecoderCheckpoint, *, dtype: str = "float16") -> pathlib.Path:
  """Writes the decoder state file (arrays as float16 or float32, compressed), after the checks `load_decoder`
  makes."""
  path = pathlib.Path(path)
  arrays = _checked_decoder_arrays({k: np.asarray(v, np.float32) for k, v in ckpt.params.items()}, ckpt.arch,
                                   ckpt.width, str(path))
  if dtype == "float16" and any(np.max(np.abs(a)) > np.finfo(np.float16).max for a in arrays.values()):
    raise NSTError(f"{path}: decoder parameters overflow float16; save as float32")
  meta = {"arch": ckpt.arch, "width": int(ckpt.width), "encoder_layer": ENCODER_LAYER,
          "encoder_sha256": ckpt.encoder_sha256, "encoder_source": ckpt.encoder_source, "info": ckpt.info}
  return checkpoint.write(path, kind=DECODER_FORMAT, version=DECODER_FORMAT_VERSION, meta=meta, compress=True,
                          arrays={k: a.astype(dtype) for k, a in arrays.items()})


def load_decoder(path: str | os.PathLike) -> DecoderCheckpoint:
  """Reads a decoder state file strictly: its metadata, then exactly the arrays of its width, float16/32, finite."""
  path = pathlib.Path(path)
  where = str(path)
  if not path.is_file():
    raise NSTError(f"--decoder {where!r}: no such decoder file")
  meta, arrays = checkpoint.read(path, what="AdaIN decoder")
  checkpoint.check_format(meta, path=path, kind=DECODER_FORMAT, versions=(DECODER_FORMAT_VERSION,),
                          what="AdaIN decoder")
  for field in ("arch", "width", "encoder_layer", "encoder_sha256", "encoder_source", "info"):
    if field not in meta:
      raise NSTError(f"{where}: decoder metadata has no field {field!r}")
  if meta["arch"] not in vgg.ARCHS or meta["encoder_layer"] != ENCODER_LAYER:
    raise NSTError(f"{where}: decoder for an unsupported encoder {meta['arch']!r}/{meta['encoder_layer']!r}")
  if not isinstance(meta["width"], int) or meta["width"] < 1:
    raise NSTError(f"{where}: decoder width must be a positive integer, got {meta['width']!r}")
  checked = _checked_decoder_arrays(arrays, meta["arch"], meta["width"], where)
  return DecoderCheckpoint(params={k: a.astype(np.float32) for k, a in checked.items()}, arch=meta["arch"],
                           width=meta["width"], encoder_sha256=str(meta["encoder_sha256"]),
                           encoder_source=str(meta["encoder_source"]), info=dict(meta["info"]))


def resolve_decoder(name_or_path: str) -> DecoderCheckpoint:
  """A decoder .npz path, or NAME looked up as NAME.npz in `weights_dir()` and then in the source checkout's
  weights/ folder (where the project's trained decoder ships)."""
  path = pathlib.Path(name_or_path).expanduser()
  if path.is_file():
    return load_decoder(path)
  if "/" not in name_or_path and os.sep not in name_or_path and not path.suffix:
    for folder in (weights_dir(), _REPO_WEIGHTS):
      if (folder / f"{name_or_path}.npz").is_file():
        return load_decoder(folder / f"{name_or_path}.npz")
  raise NSTError(f"--decoder {name_or_path!r}: no such decoder file or name")


def check_encoder(ckpt: DecoderCheckpoint, weights: VGGWeights) -> None:
  """NSTError unless `weights` are the encoder `ckpt` was trained with (same architecture and weights sha256)."""
  if ckpt.arch != weights.arch or ckpt.encoder_sha256 != weights.source_sha256:
    raise NSTError(f"--decoder was trained with the {ckpt.arch} encoder sha256 {ckpt.encoder_sha256[:12]} "
                   f"({ckpt.encoder_source}), but --weights is {weights.arch} sha256 {weights.source_sha256[:12]} "
                   f"({weights.source}); use the matching --weights or decoder")

