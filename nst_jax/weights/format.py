"""The one strict on-disk format of VGG weights.

Every weight set lives in one `.npz` state file (`nst_jax.io.checkpoint`, format "nst_jax-vgg-weights"): arrays
keyed `conv1_1/kernel` (HWIO float32, or float16 in a half-size copy), `conv1_1/bias`, ... for all convolutions of
the architecture, optional extras (HED side outputs `hed/dsn{1..5}/*`, `hed/fuse/*`), and a JSON string under
`__meta__` recording the architecture, the input preprocessing the weights were trained with, where they came from
and the sha256 of the original file; files converted before the "format" field existed load as version 1. Loading is
strict: a missing, unexpected, misshapen or non-float array is an error that names the key, so a bad file fails at
load time and not as odd images later.

Converters from the published checkpoints are in `converters`, the known sources in `sources`, fetching in `fetch`
and the command line `python -m nst_jax weights` in `nst_jax.cli.weights`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from nst_jax.errors import WeightsError
from nst_jax.io import checkpoint
from nst_jax.models import vgg
from nst_jax.models.preprocessing import Preprocessing

PathLike = str | os.PathLike

WEIGHTS_FORMAT = "nst_jax-vgg-weights"
FORMAT_VERSION = 1
META_KEY = checkpoint.META_KEY
DTYPES = ("float32", "float16")


# ----------------------------------------------------------------------------------------------------------------
# The weights and their on-disk format


@dataclasses.dataclass
class VGGWeights:
  """A converted weight set.

  Attributes:
    arch: 'vgg16' or 'vgg19'.
    params: Flax layout, {"conv1_1": {"kernel": HWIO float32, "bias": (O,) float32}, ...}.
    preprocessing: what the network expects as input.
    source: human-readable origin (URL or file name).
    source_sha256: hex sha256 of the original file.
    extras: flat {"hed/dsn1/kernel": array, ...}; empty if none."""

  arch: str
  params: dict
  preprocessing: Preprocessing
  source: str
  source_sha256: str
  extras: dict = dataclasses.field(default_factory=dict)


HED_SIDE_CHANNELS = (64, 128, 256, 512, 512)  # channels of conv1_2, conv2_2, conv3_3, conv4_3, conv5_3


def _hed_extra_shapes() -> dict[str, tuple[int, ...]]:
  shapes: dict[str, tuple[int, ...]] = {}
  for k, channels in enumerate(HED_SIDE_CHANNELS, start=1):
    shapes[f"hed/dsn{k}/kernel"] = (1, 1, channels, 1)
    shapes[f"hed/dsn{k}/bias"] = (1,)
  shapes["hed/fuse/kernel"] = (1, 1, len(HED_SIDE_CHANNELS), 1)
  shapes["hed/fuse/bias"] = (1,)
  return shapes


EXTRA_SHAPES: dict[str, dict[str, tuple[int, ...]]] = {"hed": _hed_extra_shapes()}


def expected_shapes(arch: str, extras: Iterable[str] = ()) -> dict[str, tuple[int, ...]]:
  """{flat key: shape} of every array a weights file of `arch` with `extras` must hold, in forward order."""
  if arch not in vgg.ARCHS:
    raise WeightsError(f"unknown architecture {arch!r}; expected one of {', '.join(vgg.ARCHS)}")
  shapes: dict[str, tuple[int, ...]] = {}
  for name, (kernel, bias) in vgg.conv_shapes(arch).items():
    shapes[f"{name}/kernel"] = tuple(kernel)
    shapes[f"{name}/bias"] = tuple(bias)
  for extra in extras:
    if extra not in EXTRA_SHAPES:
      raise WeightsError(f"unknown extra {extra!r}; expected one of {', '.join(EXTRA_SHAPES)}")
    shapes.update(EXTRA_SHAPES[extra])
  return shapes


def format_shape(shape: Iterable[int]) -> str:
  """A shape as error messages print it, e.g. (3, 3, 64, 64)."""
  return str(tuple(int(n) for n in shape))


def checked_arrays(arrays: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]], where: str,
                   origin: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
  """Exactly the expected keys, shapes, floating dtypes and finite values, as float32 in `expected` order.

  Raises WeightsError for the first fault; `origin` maps a key to where it came from in a source file, so
  converter errors name both."""
  def name(key: str) -> str:
    return f"{origin[key]} (-> {key})" if origin and key in origin else repr(key)

  for key, shape in expected.items():
    if key not in arrays:
      raise WeightsError(f"{where}: missing array {key!r} (expected shape {format_shape(shape)})")
  for key, value in arrays.items():
    if key not in expected:
      shape = format_shape(value.shape) if isinstance(value, np.ndarray) else type(value).__name__
      raise WeightsError(f"{where}: unexpected array {name(key)} with shape {shape}; expected only the keys of "
                         f"the architecture and its extras")
  checked = {}
  for key, shape in expected.items():
    value = arrays[key]
    if not isinstance(value, np.ndarray):
      raise WeightsError(f"{where}: {name(key)} is a {type(value).__name__}, expected an array")
    if tuple(value.shape) != tuple(shape):
      raise WeightsError(f"{where}: {name(key)} has shape {format_shape(value.shape)}, expected {format_shape(shape)}")
    if not np.issubdtype(value.dtype, np.floating) and value.dtype != np.dtype(jnp.bfloat16):
      raise WeightsError(f"{where}: {name(key)} has dtype {value.dtype}, expected floating point")
    value = np.ascontiguousarray(value, dtype=np.float32)
    if not np.isfinite(value).all():
      raise WeightsError(f"{where}: {name(key)} contains NaN or infinite values")
    checked[key] = value
  return checked


def _flatten_params(params: Mapping[str, Any], where: str) -> dict[str, Any]:
  if not isinstance(params, Mapping):
    raise WeightsError(f"{where}: params must be a dict of layers, got {type(params).__name__}")
  flat = {}
  for layer, entries in params.items():
    if not isinstance(entries, Mapping):
      raise WeightsError(f"{where}: params[{layer!r}] must be a dict with 'kernel' and 'bias'")
    for part, value in entries.items():
      flat[f"{layer}/{part}"] = value
  return flat


def _unflatten_params(flat: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
  params: dict[str, dict[str, np.ndarray]] = {}
  for key, value in flat.items():
    layer, part = key.split("/")
    params.setdefault(layer, {})[part] = value
  return params


def split_conv_and_extras(flat: Mapping[str, np.ndarray]) -> tuple[dict, dict]:
  """({conv: {'kernel', 'bias'}}, {extra key: array}) of a flat {'convX_Y/kernel': ...} dict."""
  convs = {k: v for k, v in flat.items() if k.startswith("conv")}
  extras = {k: v for k, v in flat.items() if not k.startswith("conv")}
  return _unflatten_params(convs), extras


def extra_names(extras: Mapping[str, Any]) -> list[str]:
  """The groups of extra arrays (e.g. 'hed'), sorted."""
  return sorted({key.split("/", 1)[0] for key in extras})


def save_weights(path: PathLike, weights: VGGWeights, *, dtype: str = "float32") -> None:
  """Writes `weights` to `path` (.npz, a state file of `nst_jax.io.checkpoint`) atomically.

  The same checks as `load_weights` are made first. `dtype` "float16" halves the file (a copy for a machine that
  receives files by size); loading gives float32 either way."""
  path = pathlib.Path(path)
  where = str(path)
  extras = extra_names(weights.extras)
  # np.asarray also takes jax arrays, e.g. parameters straight out of a Flax model.
  arrays = {k: np.asarray(v) for k, v in {**_flatten_params(weights.params, where), **weights.extras}.items()}
  checked = checked_arrays(arrays, expected_shapes(weights.arch, extras), where)
  if dtype not in DTYPES:
    raise WeightsError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
  meta = {"arch": weights.arch, "preprocessing": weights.preprocessing.to_dict(), "source": str(weights.source),
          "source_sha256": str(weights.source_sha256), "extras": extras}
  checkpoint.write(path, kind=WEIGHTS_FORMAT, version=FORMAT_VERSION, meta=meta,
                   arrays={k: v.astype(dtype) for k, v in checked.items()})


def _convert_hint(path: pathlib.Path) -> str:
  return f"to use an original checkpoint run `python -m nst_jax weights convert {path}`"


def _parse_meta(meta: dict[str, Any], where: str) -> dict[str, Any]:
  # Files written before the "format" field (all weights converted by earlier versions) are version 1.
  checkpoint.check_format(meta, path=where, kind=WEIGHTS_FORMAT, versions=(FORMAT_VERSION,), what="weights",
                          error=WeightsError, legacy=True)
  for field in ("format_version", "arch", "preprocessing", "source", "source_sha256", "extras"):
    if field not in meta:
      raise WeightsError(f"{where}: {META_KEY!r} has no field {field!r}")
  if meta["format_version"] != FORMAT_VERSION:
    raise WeightsError(f"{where}: format_version {meta['format_version']!r} is not supported "
                       f"(this nst_jax reads version {FORMAT_VERSION})")
  if meta["arch"] not in vgg.ARCHS:
    raise WeightsError(f"{where}: unknown arch {meta['arch']!r}; expected one of {', '.join(vgg.ARCHS)}")
  extras = meta["extras"]
  if not isinstance(extras, list) or not all(isinstance(e, str) and e in EXTRA_SHAPES for e in extras):
    raise WeightsError(f"{where}: extras must be a list of {sorted(EXTRA_SHAPES)}, got {extras!r}")
  try:
    meta["preprocessing"] = Preprocessing.from_dict(meta["preprocessing"])
  except WeightsError as e:
    raise WeightsError(f"{where}: {e}") from None
  return meta


def load_weights(path: PathLike, *, damaged_hint: str = "") -> VGGWeights:
  """Reads an nst_jax weights .npz strictly: exactly the arrays its metadata promises, with the right shapes.

  `damaged_hint` says how to replace a damaged file (e.g. fetch it again)."""
  path = pathlib.Path(path)
  where = str(path)
  if not path.is_file():
    raise WeightsError(f"{where}: no such weights file")
  meta, arrays = checkpoint.read(path, what="weights", hint=_convert_hint(path), error=WeightsError,
                                 damaged_hint=damaged_hint or "convert or fetch it again")
  meta = _parse_meta(meta, where)
  checked = checked_arrays(arrays, expected_shapes(meta["arch"], meta["extras"]), where)
  params, extras = split_conv_and_extras(checked)
  return VGGWeights(arch=meta["arch"], params=params, preprocessing=meta["preprocessing"],
                    source=str(meta["source"]), source_sha256=str(meta["source_sha256"]), extras=extras)


def sha256_of(path: PathLike) -> str:
  """Hex sha256 of a file."""
  return file_digests(path, ("sha256",))["sha256"]


def file_digests(path: PathLike, algorithms: Iterable[str]) -> dict[str, str]:
  """Hex digests of a file, all in one pass (the big checkpoints are read only once)."""
  hashes = {a: hashlib.new(a, usedforsecurity=False) if a == "md5" else hashlib.new(a) for a in algorithms}
  with open(path, "rb") as f:
    while chunk := f.read(1 << 20):
      for h in hashes.values():
        h.update(chunk)
  return {a: h.hexdigest() for a, h in hashes.items()}

