"""The nst_jax weights .npz format (round trip, strict loading, files of earlier versions) and preprocessing."""

from __future__ import annotations

import json
import os
import pathlib

import jax
import numpy as np
import pytest

from nst_jax.errors import WeightsError
from nst_jax.models.preprocessing import CAFFE_VGG, HED_CAFFE, TORCHVISION, Preprocessing
from nst_jax.weights.format import load_weights, save_weights

from weights_files import assert_holds, make_weights, write_keras_h5


# ----------------------------------------------------------------------------------------------------------------
# The .npz format: round trip and strict loading



def test_save_load_round_trip(tmp_path, flats):
  path = tmp_path / "sub" / "hed.npz"
  save_weights(path, make_weights(flats["hed"], preprocessing=HED_CAFFE))
  w = load_weights(path)
  assert (w.arch, w.preprocessing, w.source, w.source_sha256) == ("vgg16", HED_CAFFE, "synthetic", "ab" * 32)
  assert_holds(w, flats["hed"])
  assert os.listdir(path.parent) == ["hed.npz"]  # no temp files left behind
  with np.load(path) as z:
    meta = json.loads(str(z["__meta__"]))
  assert meta == {"format": "nst_jax-vgg-weights", "format_version": 1, "arch": "vgg16",
                  "preprocessing": HED_CAFFE.to_dict(), "source": "synthetic", "source_sha256": "ab" * 32,
                  "extras": ["hed"]}


def test_files_of_earlier_versions_still_load(tmp_path, saved_vgg16, flats):
  """Weights converted before the "format" field (every hed-vgg16.npz fetched so far) load as before; a state file
  of another kind is refused in one line that says what it is."""
  with np.load(saved_vgg16) as z:
    meta = json.loads(str(z["__meta__"]))
  del meta["format"]
  old = rewrite(saved_vgg16, tmp_path / "old.npz", put={"__meta__": np.array(json.dumps(meta))})
  assert_holds(load_weights(old), flats["vgg16"])
  decoder = rewrite(saved_vgg16, tmp_path / "decoder.npz", put={"__meta__": meta_with(
      saved_vgg16, format="nst_jax-adain-decoder")})
  with pytest.raises(WeightsError, match=r"decoder\.npz: not an nst_jax weights \(a nst_jax-adain-decoder file"):
    load_weights(decoder)


def test_save_refuses_bad_weights_and_writes_nothing(tmp_path, flats):
  flat = dict(flats["vgg16"])
  flat["conv5_3/bias"] = np.zeros(3, np.float32)
  with pytest.raises(WeightsError, match=r"'conv5_3/bias' has shape \(3,\), expected \(512,\)"):
    save_weights(tmp_path / "bad.npz", make_weights(flat))
  assert os.listdir(tmp_path) == []


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
    (dict(drop=["__meta__"]), r"no '__meta__' entry.*python -m nst_jax weights convert"),
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
  with pytest.raises(WeightsError, match=r"python -m nst_jax weights convert .*raw\.h5"):
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


