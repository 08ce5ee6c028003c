"""Universal style transfer (WCT, Li et al. 2017): the transform against float64 NumPy references, region masks,
the decoders' checkpoint, resumable reconstruction training and the cascade end to end.

The encoder is a random VGG16 with Caffe preprocessing and the decoders are tiny (width 4), so everything runs at
32-64 px on a CPU in well under a minute.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax.errors import NSTError
from nst_jax.methods.wct import ops, runs, stylize as wct, train as wct_train
from nst_jax.models import vgg, wct_decoder
from nst_jax.models.preprocessing import CAFFE_VGG
from nst_jax.weights.format import VGGWeights


def np_moments(x, w=None):
  x = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
  w = np.ones(len(x)) if w is None else np.asarray(w, np.float64).reshape(-1)
  mean = w @ x / w.sum()
  c = x - mean
  return mean, (c * w[:, None]).T @ c / (w.sum() - (w * w).sum() / w.sum())


def np_power(cov, p, eps):
  values, vectors = np.linalg.eigh(cov)
  values = np.maximum(values, 0) + eps * np.mean(np.maximum(values, 0))
  return (vectors * values ** p) @ vectors.T


@pytest.fixture(scope="module")
def feats():
  rng = np.random.default_rng(0)
  mix = rng.normal(size=(16, 16))
  content = (rng.gamma(2.0, 3.0, (20, 24, 16)) @ mix).astype(np.float32)
  styles = [((rng.normal(5.0, 4.0, (18, 21, 16)) @ rng.normal(size=(16, 16))) + rng.normal(size=16)).astype(
      np.float32) for _ in range(2)]
  return content, styles


def test_moments_match_numpy_with_and_without_weights(feats):
  content, _ = feats
  w = np.random.default_rng(1).uniform(0, 1, content.shape[:2]).astype(np.float32)
  for weights in (None, w):
    m = ops.moments(jnp.asarray(content), weights=None if weights is None else jnp.asarray(weights))
    mean, cov = np_moments(content, weights)
    np.testing.assert_allclose(m.mean, mean, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(m.cov, cov, rtol=1e-4, atol=1e-3 * np.abs(cov).max())


def test_whitening_and_coloring_matrices_match_float64(feats):
  content, _ = feats
  _, cov = np_moments(content)
  for eps in (1e-5, 1e-2):
    np.testing.assert_allclose(ops.whitening_matrix(jnp.asarray(cov, jnp.float32), eps=eps),
                               np_power(cov, -0.5, eps), rtol=2e-3, atol=2e-3 * np.abs(np_power(cov, -0.5, eps)).max())
    np.testing.assert_allclose(ops.coloring_matrix(jnp.asarray(cov, jnp.float32), eps=eps),
                               np_power(cov, 0.5, eps), rtol=2e-3, atol=2e-3 * np.abs(np_power(cov, 0.5, eps)).max())


def test_whitened_features_have_identity_covariance(feats):
  # Well conditioned (covariance condition ~10): float32's eigendecomposition error grows with the condition number
  # (~2e-4 at ~4e3, the `feats` fixture); there the float64 reference above is the test.
  rng = np.random.default_rng(4)
  content = rng.normal(size=(20, 24, 16)) @ (np.eye(16) + 0.125 * rng.normal(size=(16, 16))) + rng.normal(size=16)
  content = content.astype(np.float32)
  white = np.asarray(ops.whiten(jnp.asarray(content), eps=1e-7), np.float64)
  mean, cov = np_moments(white)
  np.testing.assert_allclose(mean, 0.0, atol=1e-4)
  np.testing.assert_allclose(cov, np.eye(16), atol=1e-4)


def test_colored_features_have_the_style_mean_and_covariance(feats):
  content, (style, _) = feats
  t = ops.style_transform(jnp.asarray(style), eps=1e-7)
  out = np.asarray(ops.wct(jnp.asarray(content), t, eps=1e-7), np.float64)
  mean, cov = np_moments(out)
  s_mean, s_cov = np_moments(style)
  np.testing.assert_allclose(mean, s_mean, atol=1e-4 * np.abs(s_mean).max())
  np.testing.assert_allclose(cov / np.abs(s_cov).max(), s_cov / np.abs(s_cov).max(), atol=1e-4)


def test_paired_transform_equals_wct_under_vmap_and_jit(feats):
  content, (style, other) = feats
  contents = jnp.stack([content, content[::-1]])
  styles = jnp.stack([style[:20, :21], other[:20, :21]])
  paired = np.asarray(jax.jit(jax.vmap(ops.wct_pair))(contents, styles))
  for i in range(2):
    mean, cov = np_moments(contents[i])
    s_mean, s_cov = np_moments(styles[i])
    reference = ((np.asarray(contents[i], np.float64) - mean) @ np_power(cov, -0.5, ops.EPS)
                 @ np_power(s_cov, 0.5, ops.EPS) + s_mean)
    single = np.asarray(ops.wct(contents[i], ops.style_transform(styles[i])))
    # Both float32 paths within the same distance of the float64 reference (the conditioning of these features
    # puts float32 a few 1e-4 of the range off).
    for got in (paired[i], single):
      np.testing.assert_allclose(got, reference, atol=1e-3 * np.abs(reference).max())


def test_rank_deficient_covariance_stays_finite():
  # Dead ReLU channels and a flat image: zero-variance directions must not divide by zero.
  x = np.zeros((8, 8, 6), np.float32)
  x[..., 0] = np.arange(64).reshape(8, 8)
  for feats in (x, np.ones((8, 8, 6), np.float32)):
    white = ops.whiten(jnp.asarray(feats))
    assert np.all(np.isfinite(np.asarray(white)))


def test_alpha_and_blend_weights(feats):
  content, styles = feats
  ts = [ops.style_transform(jnp.asarray(s)) for s in styles]
  c = jnp.asarray(content)
  np.testing.assert_allclose(ops.transform(c, ts, alpha=0.0), content, rtol=1e-6)
  one = np.asarray(ops.transform(c, ts[:1]))
  np.testing.assert_allclose(ops.transform(c, ts, style_weights=jnp.array([1.0, 0.0])), one, rtol=1e-5, atol=1e-4)
  both = [np.asarray(ops.transform(c, [t])) for t in ts]
  np.testing.assert_allclose(ops.transform(c, ts, alpha=0.5, style_weights=jnp.array([3.0, 1.0])),
                             0.5 * (0.75 * both[0] + 0.25 * both[1]) + 0.5 * content, rtol=1e-4, atol=1e-3)


def test_masks_keep_each_region_transform_inside_its_region(feats):
  content, styles = feats
  h, w = content.shape[:2]
  left = np.zeros((h, w), np.float32)
  left[:, : w // 2] = 1.0
  masks = jnp.asarray(np.stack([left, 1.0 - left]))
  ts = [ops.style_transform(jnp.asarray(s)) for s in styles]
  out = np.asarray(ops.transform(jnp.asarray(content), ts, masks=masks))
  # Changing style 1 changes only region 1; region 0's result is the WCT of region 0 alone with style 0.
  other = ops.style_transform(jnp.asarray(styles[0][::-1] * 2.0 + 3.0))
  changed = np.asarray(ops.transform(jnp.asarray(content), [ts[0], other], masks=masks))
  np.testing.assert_array_equal(changed[:, : w // 2], out[:, : w // 2])
  assert np.abs(changed[:, w // 2:] - out[:, w // 2:]).max() > 1.0
  alone = np.asarray(ops.wct(jnp.asarray(content[:, : w // 2]), ts[0]))
  np.testing.assert_allclose(out[:, : w // 2], alone, rtol=1e-4, atol=1e-3 * np.abs(alone).max())


# ----------------------------------------------------------------------------------------------------------------
# Decoders, their file and their training


@pytest.fixture(scope="module")
def weights():
  return VGGWeights("vgg16", vgg.random_params("vgg16", seed=3), CAFFE_VGG, "random", "0" * 64)


def decoder_set(weights, levels=wct_decoder.LEVELS, width=4):
  return wct_decoder.DecoderSet(
      {layer: wct_decoder.LevelDecoder(wct_decoder.init_decoder("vgg16", layer, width, seed=i), width,
                                       "reflect" if i % 2 else "zero", 0.01 * (i + 1), {"step": i})
       for i, layer in enumerate(levels)}, "vgg16", weights.source_sha256, weights.source, {"note": "test"})


def test_decoder_output_has_the_input_size_at_every_level(weights):
  image = jnp.asarray(np.random.default_rng(0).random((1, 32, 48, 3)), jnp.float32)
  for layer in wct_decoder.LEVELS:
    feats = wct_train.encode(weights.params, image, arch="vgg16", preprocessing=CAFFE_VGG, layer=layer)
    level = wct_decoder.LevelDecoder(wct_decoder.init_decoder("vgg16", layer, 4), 4)
    assert wct_decoder.decode(level, feats, arch="vgg16", layer=layer).shape == image.shape


def test_decoder_file_round_trips(tmp_path, weights):
  ds = decoder_set(weights)
  wct_decoder.save_decoders(tmp_path / "d.npz", ds, dtype="float32")
  back = wct_decoder.load_decoders(tmp_path / "d.npz")
  assert (back.arch, back.encoder_sha256, back.info) == (ds.arch, ds.encoder_sha256, ds.info)
  for layer, level in ds.levels.items():
    got = back.levels[layer]
    assert (got.width, got.padding, got.input_scale, got.info) == (level.width, level.padding, level.input_scale,
                                                                   level.info)
    for k, v in level.params.items():
      np.testing.assert_array_equal(got.params[k], v)
  wct_decoder.save_decoders(tmp_path / "h.npz", ds)  # float16: the shipped precision
  half = wct_decoder.load_decoders(tmp_path / "h.npz")
  for k, v in ds.levels["relu3_1"].params.items():
    np.testing.assert_allclose(half.levels["relu3_1"].params[k], v, rtol=1e-3, atol=1e-4)


def test_damaged_decoder_files_fail_with_one_line(tmp_path, weights):
  ds = decoder_set(weights, levels=("relu2_1",))
  bad = dataclasses.replace(ds.levels["relu2_1"], params={**ds.levels["relu2_1"].params})
  bad.params["dec2_1/kernel"] = bad.params["dec2_1/kernel"][..., :1]
  with pytest.raises(NSTError, match="shape"):
    wct_decoder.save_decoders(tmp_path / "x.npz", dataclasses.replace(ds, levels={"relu2_1": bad}))
  (tmp_path / "junk.npz").write_bytes(b"not a zip")
  with pytest.raises(NSTError, match="not an nst_jax WCT decoder"):
    wct_decoder.load_decoders(tmp_path / "junk.npz")
  with pytest.raises(NSTError, match="no such"):
    wct_decoder.load_decoders(tmp_path / "missing.npz")


@pytest.fixture(scope="module")
def tiny_data():
  rng = np.random.default_rng(5)
  photos = [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(3)]  # as the image pool keeps them
  paintings = [rng.integers(0, 256, (44, 36, 3), dtype=np.uint8) for _ in range(3)]
  return photos, paintings


def assert_resume_equals_an_uninterrupted_run(trainer, tiny_data, tmp_path) -> None:
  """A 6-step run stopped after step 3 and resumed ends with the parameters of an uninterrupted one."""
  log = lambda _: None  # noqa: E731
  whole, _ = wct_train.train(trainer, *tiny_data, out_dir=tmp_path / "whole", log=log)
  wct_train.train(trainer, *tiny_data, out_dir=tmp_path / "parts", stop=3, log=log)
  resumed, history = wct_train.train(trainer, *tiny_data, out_dir=tmp_path / "parts", log=log)
  assert resumed["step"] == whole["step"] == 6
  for k, v in jax.device_get(whole["params"]).items():
    np.testing.assert_array_equal(jax.device_get(resumed["params"])[k], v)
  assert [h["step"] for h in history if "loss" in h] == [3, 6]


def test_resumed_training_reaches_the_parameters_of_an_uninterrupted_run(tmp_path, weights, tiny_data):
  config = wct_train.TrainConfig(layer="relu2_1", width=4, crop=16, batch=1, steps=6, lr=1e-3)
  trainer = wct_train.make_trainer(config, arch="vgg16", params=weights.params, preprocessing=CAFFE_VGG,
                                   encoder_sha256=weights.source_sha256, input_scale=0.02)
  assert_resume_equals_an_uninterrupted_run(trainer, tiny_data, tmp_path)


def test_training_lowers_the_reconstruction_and_stylized_losses(tmp_path, weights, tiny_data):
  config = wct_train.TrainConfig(layer="relu1_1", width=8, crop=16, batch=2, steps=40, lr=3e-3, stylized_weight=1.0)
  trainer = wct_train.make_trainer(config, arch="vgg16", params=weights.params, preprocessing=CAFFE_VGG,
                                   encoder_sha256=weights.source_sha256, input_scale=0.02)
  _, history = wct_train.train(trainer, *tiny_data, out_dir=tmp_path, log_every=10, log=lambda _: None)
  losses = [h["loss"] for h in history if "loss" in h]
  stylized = [h["stylized"] for h in history if "loss" in h]
  assert losses[-1] < 0.5 * losses[0] and stylized[-1] < 0.5 * stylized[0], (losses, stylized)


def test_export_writes_the_levels_with_their_held_out_psnr(tmp_path, weights, tiny_data):
  config = wct_train.TrainConfig(layer="relu1_1", width=4, crop=16, batch=1, steps=2)
  trainer = runs.make_level_trainer(config, weights, tmp_path, *tiny_data)
  wct_train.train(trainer, *tiny_data, out_dir=runs.level_dir(tmp_path, "relu1_1"), log=lambda _: None)
  ds = runs.export(tmp_path, ["relu1_1"], weights, tmp_path / "d.npz", holdout={"a": tiny_data[0][0] / 255.0},
                   log=lambda _: None)
  back = wct_decoder.load_decoders(tmp_path / "d.npz")
  info = back.levels["relu1_1"].info
  assert info["step"] == 2 and info["holdout_psnr"]["a"] == pytest.approx(ds.levels["relu1_1"].info["holdout_psnr"]["a"])
  assert back.levels["relu1_1"].input_scale == pytest.approx(trainer.input_scale)


# ----------------------------------------------------------------------------------------------------------------
# The cascade


@pytest.fixture(scope="module")
def model(weights):
  return wct.make_model(weights, decoder_set(weights))


def test_cascade_keeps_the_size_and_range(model):
  rng = np.random.default_rng(2)
  content, style = rng.random((37, 45, 3)).astype(np.float32), rng.random((40, 40, 3)).astype(np.float32)
  out = wct.stylize(content, [style], model=model)
  assert out.shape == content.shape and out.min() >= 0 and out.max() <= 1


def test_cascade_with_masks_and_blends_and_levels(model):
  rng = np.random.default_rng(3)
  content = rng.random((32, 32, 3)).astype(np.float32)
  styles = [rng.random((32, 32, 3)).astype(np.float32), rng.random((32, 32, 3)).astype(np.float32) ** 3]
  a = wct.stylize(content, styles, model=model, style_weights=[1.0, 0.0], levels=("relu2_1", "relu1_1"))
  b = wct.stylize(content, styles[:1], model=model, levels=("relu2_1", "relu1_1"))
  np.testing.assert_allclose(a, b, atol=1e-4)
  masks = np.zeros((2, 32, 32), np.float32)
  masks[0, :, :16], masks[1, :, 16:] = 1.0, 1.0
  m = wct.stylize(content, styles, model=model, masks=masks, levels=("relu1_1",))
  assert m.shape == content.shape
  with pytest.raises(NSTError, match="cannot be combined"):
    wct.stylize(content, styles, model=model, masks=masks, style_weights=[1, 1])


def test_model_refuses_another_encoder(weights):
  other = dataclasses.replace(weights, source_sha256="1" * 64)
  with pytest.raises(NSTError, match="trained with"):
    wct.make_model(other, decoder_set(weights))


def test_tiles_with_one_tile_give_the_whole_image_result(model):
  rng = np.random.default_rng(6)
  content, style = rng.random((48, 64, 3)).astype(np.float32), rng.random((40, 40, 3)).astype(np.float32)
  # Level by level: through the whole cascade of random decoders float32 round-off (the tiles' moments are combined
  # in float64) is amplified chaotically, level after level. The deepest level and a shallow one (each level
  # compiles twice here).
  for layer in ("relu5_1", "relu2_1"):
    whole = wct.stylize(content, [style], model=model, levels=(layer,))
    one = wct.stylize(content, [style], model=model, levels=(layer,),
                      tiling=wct.blend_tiles.Tiling(tile=64, overlap=16))
    np.testing.assert_allclose(one, whole, atol=2e-3)
    assert np.mean(np.abs(one - whole)) < 1e-4


def test_tiles_use_whole_image_statistics(model):
  # Every tile is whitened with the whole image's moments: a half-dark image's tiles keep the whole result's
  # brightness relation instead of each tile being normalised alone (which would lift the dark half).
  rng = np.random.default_rng(7)
  content = rng.random((64, 128, 3)).astype(np.float32)
  content[:, :64] *= 0.2
  style = rng.random((48, 48, 3)).astype(np.float32)
  levels = ("relu1_1",)
  whole = wct.stylize(content, [style], model=model, levels=levels)
  tiled = wct.stylize(content, [style], model=model, levels=levels,
                      tiling=wct.blend_tiles.Tiling(tile=64, overlap=16))
  # Tiles differ from the whole only near their edges (the networks' padding), by at most a few percent.
  np.testing.assert_allclose(tiled, whole, atol=0.05)
  assert np.mean(np.abs(tiled - whole)) < 2e-3
  alone = wct.stylize(content[:, :64], [style], model=model, levels=levels)  # the dark half normalised alone
  assert np.mean(np.abs(alone - whole[:, :64])) > 20 * np.mean(np.abs(tiled - whole))


def test_moments_combined_from_parts_match_the_whole(feats):
  content, _ = feats
  big = content + 1e3  # a large mean against the spread: naive E[ff^T] - mm^T would lose float32 precision
  w = np.random.default_rng(8).uniform(0, 1, big.shape[:2]).astype(np.float32)
  parts = [ops.moment_sums(jnp.asarray(big[rows]), jnp.asarray(w[rows])) for rows in (slice(0, 7), slice(7, 20))]
  got = ops.combine_moments(parts)
  mean, cov = np_moments(big, w)
  np.testing.assert_allclose(got.mean, mean, rtol=1e-6)
  np.testing.assert_allclose(got.cov, cov, rtol=1e-3, atol=1e-3 * np.abs(cov).max())


def test_relu4_1_decoder_is_an_adain_decoder(weights):
  from nst_jax.models import adain_decoder  # pylint: disable=import-outside-toplevel
  ds = decoder_set(weights, levels=("relu4_1",))
  ckpt = runs.as_adain_decoder(ds)
  feats = jnp.asarray(np.random.default_rng(9).random((1, 3, 5, 512)), jnp.float32)
  level = ds.levels["relu4_1"]
  np.testing.assert_allclose(
      adain_decoder.decode(ckpt.params, feats, arch="vgg16", width=ckpt.width, padding=ckpt.padding,
                           input_scale=ckpt.input_scale),
      wct_decoder.decode(level, feats, arch="vgg16", layer="relu4_1"), rtol=1e-5, atol=1e-5)


def test_level_scales_run_a_level_on_the_resized_image(model):
  rng = np.random.default_rng(10)
  content, style = rng.random((48, 64, 3)).astype(np.float32), rng.random((64, 64, 3)).astype(np.float32)
  scales = {"relu2_1": 0.5}
  t = wct.style_transforms(model, style, scales=scales)
  half = wct.style_transforms(model, wct.image_io.resize(style, 32, 32))
  np.testing.assert_allclose(t["relu2_1"].coloring, half["relu2_1"].coloring, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(t["relu1_1"].coloring, wct.style_transforms(model, style)["relu1_1"].coloring,
                             rtol=1e-6)
  levels = ("relu2_1",)
  out = wct.stylize(content, [style], model=model, levels=levels, scales=scales)
  small = wct.stylize(wct.image_io.resize(content, 24, 32), [wct.image_io.resize(style, 32, 32)], model=model,
                      levels=levels)
  np.testing.assert_allclose(out, np.clip(wct.image_io.resize(small, 48, 64), 0, 1), atol=1e-5)


def test_the_file_recommends_the_default_levels(weights):
  ds = decoder_set(weights, levels=("relu2_1", "relu1_1"))
  ds.info["default_levels"] = ["relu1_1"]
  m = wct.make_model(weights, ds)
  assert m.default_levels == ("relu1_1",)
  rng = np.random.default_rng(11)
  content, style = rng.random((32, 32, 3)).astype(np.float32), rng.random((32, 32, 3)).astype(np.float32)
  np.testing.assert_array_equal(wct.stylize(content, [style], model=m),
                                wct.stylize(content, [style], model=m, levels=("relu1_1",)))
  with pytest.raises(NSTError, match="no decoder for relu3_1"):
    wct.stylize(content, [style], model=m, levels=("relu3_1",))

