"""Reading PyTorch checkpoints (zip or legacy format) without torch.

A small restricted unpickler resolves only the handful of globals a tensor state dict needs, all to local
stand-ins, so a checkpoint cannot run code; tensors become numpy arrays read straight from their storages.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import pathlib
import pickle
import re
import struct
import tarfile
import zipfile
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from nst_jax.errors import WeightsError

PathLike = str | os.PathLike


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

