"""PhotoWCT's decoders (Li et al. 2018): the encoder's pooling switches and max-unpooling against NumPy references,
the unpooling decoders, their file, and their resumable training from nearest-upsampling decoders.

The encoder is a random VGG16 with Caffe preprocessing and the decoders are tiny (width 4), so everything runs at
16-48 px on a CPU in well under a minute.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wct_test import assert_resume_equals_an_uninterrupted_run
from nst_jax.errors import NSTError
from nst_jax.io import checkpoint
from nst_jax.methods.wct import runs, stylize as wct, train as wct_train
from nst_jax.models import layers, vgg, wct_decoder
from nst_jax.models.preprocessing import CAFFE_VGG
from nst_jax.weights.format import VGGWeights


def np_switches(x):
  """The first maximum of every 2x2 window in row-major order, per channel; odd last rows/columns left out."""
  x = np.asarray(x)
  out = np.zeros(x.shape, bool)
  for n in range(x.shape[0]):
    for i in range(x.shape[1] // 2):
      for j in range(x.shape[2] // 2):
        for c in range(x.shape[3]):
          window = x[n, 2 * i: 2 * i + 2, 2 * j: 2 * j + 2, c].reshape(-1)
          k = int(np.flatnonzero(window == window.max())[0])
          out[n, 2 * i + k // 2, 2 * j + k % 2, c] = True
  return out


@pytest.fixture(scope="module")
def tied():
  """Small integers, so many windows hold equal maxima; odd height and width, as the encoder may see them."""
  return jnp.asarray(np.random.default_rng(0).integers(0, 3, (2, 7, 9, 3)), jnp.float32)


def test_switches_mark_the_first_maximum_where_max_pooling_routes_its_gradient(tied):
  switches = np.asarray(vgg.pool_switches(tied))
  assert switches.dtype == bool and switches.shape == tied.shape
  np.testing.assert_array_equal(switches, np_switches(tied))
  gradient = np.asarray(jax.grad(lambda x: vgg.pool(x, "max").sum())(tied))
  np.testing.assert_array_equal(switches, gradient > 0)  # one per window: the position max pooling picks
  assert not switches[:, -1].any() and not switches[:, :, -1].any()  # VALID pooling drops the odd last row/column


def test_unpooling_puts_each_value_at_its_window_argmax_and_zeros_elsewhere(tied):
  switches = vgg.pool_switches(tied)
  values = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3, 4, 3)), jnp.float32)
  out = np.asarray(layers.max_unpool(values, switches))
  assert out.shape == tied.shape
  s = np.asarray(switches)
  expected = np.zeros(tied.shape, np.float32)
  n, i, j, c = np.nonzero(s)
  expected[n, i, j, c] = np.asarray(values)[n, i // 2, j // 2, c]
  np.testing.assert_array_equal(out, expected)
  again = np.asarray(layers.max_unpool(vgg.pool(tied, "max"), switches))
  np.testing.assert_array_equal(again[s], np.asarray(tied)[s])
  assert not again[~s].any()
  with pytest.raises(ValueError, match="switches"):
    layers.max_unpool(values[:, :2], switches)


def test_channel_groups_average_contiguous_channels():
  switches = vgg.pool_switches(jnp.asarray(np.random.default_rng(2).normal(size=(1, 4, 6, 8)), jnp.float32))
  halves = np.asarray(layers.channel_groups(switches, 4))
  s = np.asarray(switches, np.float32)
  np.testing.assert_allclose(halves, (s[..., 0::2] + s[..., 1::2]) / 2)
  windows = halves.reshape(1, 2, 2, 3, 2, 4).sum(axis=(2, 4))
  np.testing.assert_allclose(windows, 1.0)  # unpooling with them keeps every value's total
  assert layers.channel_groups(switches, 8) is switches
  np.testing.assert_allclose(np.asarray(layers.channel_groups(switches, 16))[..., 1::2], s)


@pytest.fixture(scope="module")
def weights():
  return VGGWeights("vgg16", vgg.random_params("vgg16", seed=3), CAFFE_VGG, "random", "0" * 64)


@pytest.fixture(scope="module")
def image():
  return jnp.asarray(np.random.default_rng(4).random((1, 32, 48, 3)), jnp.float32)


def test_features_and_switches_are_the_encoders(weights, image):
  feats, switches = wct_train.encode_with_switches(weights.params, image, arch="vgg16", preprocessing=CAFFE_VGG,
                                                   layer="relu4_1")
  plain = wct_train.encode(weights.params, image, arch="vgg16", preprocessing=CAFFE_VGG, layer="relu4_1")
  np.testing.assert_array_equal(np.asarray(feats), np.asarray(plain))
  pre = vgg.VGG("vgg16", ("relu1_2", "relu2_2", "relu3_3")).apply({"params": weights.params},
                                                                 CAFFE_VGG.apply(image))
  assert list(switches) == ["pool1", "pool2", "pool3"]
  for (pool, s), source in zip(switches.items(), ("relu1_2", "relu2_2", "relu3_3")):
    np.testing.assert_array_equal(np.asarray(s), np_switches(pre[source]), err_msg=pool)


def unpool_level(layer, width=4, seed=0):
  return wct_decoder.LevelDecoder(wct_decoder.init_decoder("vgg16", layer, width, seed=seed), width,
                                  upsampling="unpool")


def test_unpooling_decoders_keep_the_size_and_differ_from_nearest_only_where_they_unpool(weights, image):
  for layer in ("relu4_1", "relu3_1", "relu2_1", "relu1_1"):
    feats, switches = wct_train.encode_with_switches(weights.params, image, arch="vgg16", preprocessing=CAFFE_VGG,
                                                     layer=layer)
    level = unpool_level(layer)
    out = wct_decoder.decode(level, feats, arch="vgg16", layer=layer, switches=switches)
    nearest = wct_decoder.decode(dataclasses.replace(level, upsampling="nearest"), feats, arch="vgg16", layer=layer,
                                 switches=switches)
    assert out.shape == image.shape
    assert np.array_equal(np.asarray(out), np.asarray(nearest)) == (layer == "relu1_1"), layer
  with pytest.raises(ValueError, match="needs the switches of pool1"):
    wct_decoder.decode(unpool_level("relu2_1"), feats, arch="vgg16", layer="relu2_1")


def format_version(path):
  return checkpoint.read(path, what="WCT decoder")[0]["format_version"]


def test_unpooling_decoder_file_round_trips_and_nearest_files_keep_version_1(tmp_path, weights):
  ds = wct_decoder.DecoderSet({"relu3_1": unpool_level("relu3_1", seed=1),
                               "relu2_1": wct_decoder.LevelDecoder(wct_decoder.init_decoder("vgg16", "relu2_1", 4), 4)},
                              "vgg16", weights.source_sha256, weights.source)
  wct_decoder.save_decoders(tmp_path / "d.npz", ds, dtype="float32")
  back = wct_decoder.load_decoders(tmp_path / "d.npz")
  assert {k: v.upsampling for k, v in back.levels.items()} == {"relu3_1": "unpool", "relu2_1": "nearest"}
  for k, v in ds.levels["relu3_1"].params.items():
    np.testing.assert_array_equal(back.levels["relu3_1"].params[k], v)
  assert format_version(tmp_path / "d.npz") == 2
  nearest = dataclasses.replace(ds, levels={"relu2_1": ds.levels["relu2_1"]})
  wct_decoder.save_decoders(tmp_path / "n.npz", nearest)
  assert format_version(tmp_path / "n.npz") == 1  # readable by readers from before unpooling
  with pytest.raises(NSTError, match="PhotoWCT"):
    wct.make_model(weights, back)


@pytest.fixture(scope="module")
def tiny_data():
  rng = np.random.default_rng(5)
  photos = [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(3)]
  paintings = [rng.integers(0, 256, (44, 36, 3), dtype=np.uint8) for _ in range(3)]
  return photos, paintings


@pytest.fixture(scope="module")
def trainer(weights):
  """relu2_1 unpooling decoder, width 4, 16-px crops, with the stylized term (it decodes with the photos' switches)."""
  config = wct_train.TrainConfig(layer="relu2_1", width=4, crop=16, batch=1, steps=6, lr=3e-3, stylized_weight=1.0,
                                 upsampling="unpool")
  return wct_train.make_trainer(config, arch="vgg16", params=weights.params, preprocessing=CAFFE_VGG,
                                encoder_sha256=weights.source_sha256, input_scale=0.02)


def test_resumed_unpooling_training_reaches_the_parameters_of_an_uninterrupted_run(tmp_path, trainer, tiny_data):
  assert_resume_equals_an_uninterrupted_run(trainer, tiny_data, tmp_path)
  nearest = dataclasses.replace(trainer, config=dataclasses.replace(trainer.config, upsampling="nearest"))
  with pytest.raises(NSTError, match="upsampling='unpool'"):
    wct_train.load_checkpoint(tmp_path / "parts" / "checkpoint.npz", nearest)


def test_unpooling_training_lowers_the_loss_on_one_batch(trainer, tiny_data):
  state = trainer.fresh_state()
  batch = wct_train.first_batch(*tiny_data, trainer.config)
  losses = []
  for _ in range(8):
    state, terms = trainer.step(state, batch)
    losses.append(float(terms["loss"]))
  assert losses[-1] < 0.7 * losses[0], losses


def test_nearest_decoders_start_an_unpooling_run_at_step_0_and_export_as_unpool(tmp_path, weights, tiny_data):
  init = wct_decoder.DecoderSet(
      {layer: wct_decoder.LevelDecoder(wct_decoder.init_decoder("vgg16", layer, 4, seed=7), 4, input_scale=0.03,
                                       info={"step": 900})
       for layer in ("relu2_1", "relu1_1")}, "vgg16", weights.source_sha256, weights.source)
  config = wct_train.TrainConfig(layer="relu2_1", width=4, crop=16, batch=1, steps=2, upsampling="unpool")
  runs.train_levels([config], weights, *tiny_data, out_dir=tmp_path, init=init, log=lambda _: None)
  meta = wct_train.read_checkpoint_meta(tmp_path / "relu2_1" / "checkpoint.npz")
  assert meta["step"] == 2 and meta["input_scale"] == pytest.approx(0.03)
  # relu1_1 never upsamples: the nearest decoder is the unpooling one, and its run goes on from its step.
  fine = dataclasses.replace(config, layer="relu1_1", steps=1000)
  runs.seed_from_decoders(fine, weights, tmp_path, init, log=lambda _: None)
  assert wct_train.read_checkpoint_meta(tmp_path / "relu1_1" / "checkpoint.npz")["step"] == 900
  ds = runs.export(tmp_path, ["relu2_1"], weights, tmp_path / "d.npz", holdout={"a": tiny_data[0][0] / 255.0},
                   log=lambda _: None)
  back = wct_decoder.load_decoders(tmp_path / "d.npz")
  assert back.levels["relu2_1"].upsampling == "unpool" and back.levels["relu2_1"].info["step"] == 2
  assert np.isfinite(back.levels["relu2_1"].info["holdout_psnr"]["a"])
  assert back.levels["relu2_1"].info["holdout_psnr_mean"] == pytest.approx(
      ds.levels["relu2_1"].info["holdout_psnr_mean"])


def test_shipped_photowct_decoders_unpool_and_beat_the_wct_decoders_held_out():
  weights_dir = pathlib.Path(__file__).resolve().parents[1] / "weights"
  photo = wct_decoder.load_decoders(weights_dir / "photowct-decoders-hed-vgg16.npz")
  nearest = wct_decoder.load_decoders(weights_dir / "wct-decoders-hed-vgg16.npz")
  assert set(photo.levels) == {"relu4_1", "relu3_1", "relu2_1", "relu1_1"}
  assert photo.encoder_sha256 == nearest.encoder_sha256
  for layer, level in photo.levels.items():
    assert level.upsampling == "unpool" and nearest.levels[layer].upsampling == "nearest"
    assert level.info["holdout_psnr_mean"] > nearest.levels[layer].info["holdout_psnr_mean"], layer
  assert (weights_dir / "photowct-decoders-hed-vgg16.npz").stat().st_size <= 10 * 2 ** 20
