"""Guided Gram matrices and guide propagation against NumPy transcriptions of Gatys et al. (2017)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from nst_jax import losses
from nst_jax.losses import guidance
from nst_jax.models import vgg
from nst_jax.errors import NSTError

LAYERS = ("conv1_1", "relu1_2", "pool1", "relu2_1", "pool2", "conv3_1", "relu3_3", "pool3", "relu4_1")


def numpy_masks(arch: str, masks: np.ndarray, last: str) -> dict[str, np.ndarray]:
  """Per-pixel loops in float64: mean of the in-image 3x3 neighbours per conv, 2x2 block mean (floored) per pool."""
  x = masks.astype(np.float64)
  out = {}
  for name in vgg.layer_names(arch):
    if name.startswith("conv"):
      r, h, w = x.shape
      y = np.zeros_like(x)
      for i in range(h):
        for j in range(w):
          y[:, i, j] = x[:, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2].mean(axis=(1, 2))
      x = y
    elif name.startswith("pool"):
      r, h, w = x.shape
      x = x[:, : h // 2 * 2, : w // 2 * 2].reshape(r, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
    out[name] = x
    if name == last:
      break
  return out


def test_masks_at_layers_match_reference_and_feature_shapes():
  masks = np.random.default_rng(0).uniform(0, 1, (2, 40, 36)).astype(np.float32)
  got = jax.jit(lambda m: guidance.masks_at_layers("vgg16", m, LAYERS))(masks)
  want = numpy_masks("vgg16", masks, "relu4_1")
  assert set(got) == set(LAYERS)
  # Shapes of the real feature maps, without computing them.
  model = vgg.VGG("vgg16", LAYERS, pooling="avg")
  feats = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x)[0],
                         jax.ShapeDtypeStruct((1, 40, 36, 3), jnp.float32))
  for name in LAYERS:
    assert got[name].shape == (2, *feats[name].shape[1:3]), name
    np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_ones_stay_ones_and_nothing_past_deepest_layer():
  ones = jnp.ones((1, 21, 19))
  got = guidance.masks_at_layers("vgg19", ones, ["relu3_4", "pool1"])
  assert set(got) == {"relu3_4", "pool1"}
  assert got["relu3_4"].shape == (1, 5, 4)
  np.testing.assert_array_equal(got["relu3_4"], 1.0)
  np.testing.assert_array_equal(got["pool1"], 1.0)
  # Nothing past relu1_1 is in the computation: exactly one box filter's worth of reduce_window.
  jaxpr = str(jax.make_jaxpr(lambda m: guidance.masks_at_layers("vgg16", m, ["relu1_1"]))(ones))
  assert jaxpr.count("reduce_window_sum") == 1


def test_max_pooling_option():
  mask = np.zeros((1, 8, 8), np.float32)
  mask[0, 3, 3] = 1.0
  got = guidance.masks_at_layers("vgg16", mask, ["pool1"], pooling="max")["pool1"]
  want = numpy_masks("vgg16", mask, "relu1_2")["relu1_2"]
  want = want.reshape(1, 4, 2, 4, 2).max(axis=(2, 4))
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_guided_gram_binary_mask_is_gram_of_selected_positions():
  rng = np.random.default_rng(1)
  feats = rng.standard_normal((1, 8, 8, 16)).astype(np.float32)
  region = rng.uniform(size=(8, 8)) < 0.4
  masks = np.stack([region, ~region]).astype(np.float32)
  got = jax.jit(guidance.guided_gram)(feats, masks)
  assert got.shape == (2, 16, 16)
  for r, sel in enumerate([region, ~region]):
    f = feats[0][sel].astype(np.float64)  # selected positions x C
    np.testing.assert_allclose(got[r], f.T @ f / len(f), rtol=1e-5, atol=1e-6)


def test_guided_gram_soft_mask_formula_and_unbatched_input():
  rng = np.random.default_rng(2)
  feats = rng.standard_normal((6, 5, 4)).astype(np.float32)
  masks = rng.uniform(size=(3, 6, 5)).astype(np.float32)
  got = guidance.guided_gram(feats, masks)
  for r in range(3):
    fm = (feats * masks[r][..., None]).reshape(-1, 4).astype(np.float64)
    np.testing.assert_allclose(got[r], fm.T @ fm / np.sum(masks[r].astype(np.float64) ** 2), rtol=1e-5)


def test_ones_mask_equals_gram_matrix():
  feats = np.random.default_rng(3).standard_normal((1, 8, 8, 16)).astype(np.float32)
  got = guidance.guided_gram(feats, jnp.ones((1, 8, 8)))
  np.testing.assert_allclose(got[0], losses.gram_matrix(feats)[0], rtol=1e-6, atol=1e-7)


def test_guided_style_loss_formula_and_empty_region():
  rng = np.random.default_rng(4)
  feats = {"a": rng.standard_normal((1, 8, 8, 16)).astype(np.float32),
           "b": rng.standard_normal((1, 4, 4, 8)).astype(np.float32)}
  style = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in feats.items()}
  masks = {k: rng.uniform(size=(2, *v.shape[1:3])).astype(np.float32) for k, v in feats.items()}
  style_masks = {k: rng.uniform(size=m.shape).astype(np.float32) for k, m in masks.items()}
  targets = {k: guidance.guided_gram(style[k], style_masks[k]) for k in feats}
  alpha = np.array([0.3, 2.0], np.float32)
  layer_w = {"a": 0.5, "b": 4.0}

  def np_gram(f, m):
    fm = (f[0] * m[..., None]).reshape(-1, f.shape[-1]).astype(np.float64)
    return fm.T @ fm / np.sum(m.astype(np.float64) ** 2)

  want = 0.0
  for k in feats:
    c = feats[k].shape[-1]
    for r in range(2):
      diff = np_gram(feats[k], masks[k][r]) - np_gram(style[k], style_masks[k][r])
      want += layer_w[k] * alpha[r] * np.sum(diff**2) / (4 * c * c)
  loss = jax.jit(lambda f, t, m, a: guidance.guided_style_loss(features=f, target_grams=t, masks=m,
                                                                 region_weights=a, layer_weights=layer_w))
  np.testing.assert_allclose(loss(feats, targets, masks, alpha), want, rtol=1e-5)

  # A third region that is empty in the synthesised image (its style region is not): finite, no contribution,
  # and no NaN in the gradient.
  empty = {k: np.concatenate([m, np.zeros((1, *m.shape[1:]), np.float32)]) for k, m in masks.items()}
  big_targets = {k: jnp.concatenate([t, 5.0 + t[:1]]) for k, t in targets.items()}
  alpha3 = np.array([0.3, 2.0, 10.0], np.float32)
  np.testing.assert_allclose(loss(feats, big_targets, empty, alpha3), want, rtol=1e-5)
  grads = jax.grad(lambda f: guidance.guided_style_loss(features=f, target_grams=big_targets, masks=empty))(feats)
  assert all(np.all(np.isfinite(g)) for g in grads.values())
  assert np.all(np.isfinite(guidance.guided_gram(feats["a"], empty["a"])))
  np.testing.assert_array_equal(guidance.guided_gram(feats["a"], empty["a"])[2], 0.0)


def test_guided_gram_by_pixel_groups_equals_the_direct_one_with_gradient():
  # Three hard regions (one empty) plus a soft border, carried to a deep layer so the guides overlap there.
  rng = np.random.default_rng(6)
  labels = np.zeros((24, 20), int)
  labels[:, 8:] = 1
  labels[16:, 8:14] = 3
  masks = np.stack([(labels == r).astype(np.float32) for r in range(4)])  # region 2 is empty
  carried = guidance.masks_at_layers("vgg16", jnp.asarray(masks), ["relu1_1", "relu2_2"])
  for name, guides in carried.items():
    guides = np.asarray(guides)
    part = guidance.guide_partition(guides)
    covered = sorted(np.concatenate([g["pixels"] for g in part]).tolist())
    assert covered == np.flatnonzero(guides.sum(axis=0) > 0).tolist()  # every covered pixel once
    for g in part:  # each group lists exactly the guides that are nonzero on its pixels
      on = guides.reshape(4, -1)[:, g["pixels"]] != 0
      assert np.all(on[g["regions"]]) and not np.any(np.delete(on, g["regions"], axis=0))
    assert 2 not in np.concatenate([g["regions"] for g in part]) and max(len(g["regions"]) for g in part) > 1
    merged = guidance.guide_partition(guides, max_groups=2)  # the smaller groups merged: still exact
    assert len(part) > 2 and len(merged) == 2
    assert sorted(np.concatenate([g["pixels"] for g in merged]).tolist()) == covered
    feats = rng.standard_normal((1, *guides.shape[1:], 8)).astype(np.float32)
    for normalization in guidance.GRAM_NORMALIZATIONS:
      want = guidance.guided_gram(feats, guides, normalization=normalization)
      got = jax.jit(lambda f, g, p: guidance.guided_gram(f, g, normalization=normalization, partition=p))(
          feats, guides, part)
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(guidance.guided_gram(feats, guides, normalization=normalization, partition=merged),
                                 want, rtol=1e-5, atol=1e-6)
    target = rng.standard_normal((4, 8, 8)).astype(np.float32)
    loss = lambda f, partitions: guidance.guided_style_loss(  # noqa: E731
        features={name: f}, target_grams={name: target}, masks={name: guides}, partitions=partitions)
    # Jitted: op by op, the gathers and their gradients compile hundreds of single-op programs.
    value, grad = jax.jit(jax.value_and_grad(lambda f: loss(f, {name: part})))(feats)
    direct_value, direct_grad = jax.jit(jax.value_and_grad(lambda f: loss(f, None)))(feats)
    np.testing.assert_allclose(value, direct_value, rtol=1e-5)
    np.testing.assert_allclose(grad, direct_grad, rtol=1e-4, atol=1e-6)


def test_default_weights_match_style_loss_for_single_full_region():
  rng = np.random.default_rng(5)
  feats = {"a": rng.standard_normal((1, 8, 8, 16)).astype(np.float32),
           "b": rng.standard_normal((1, 4, 4, 8)).astype(np.float32)}
  style = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in feats.items()}
  ones = {k: jnp.ones((1, *v.shape[1:3])) for k, v in feats.items()}
  got = guidance.guided_style_loss(features=feats, masks=ones,
                                   target_grams={k: guidance.guided_gram(v, ones[k]) for k, v in style.items()})
  want = losses.style_loss(features=feats, target_grams={k: losses.gram_matrix(v) for k, v in style.items()})
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_resize_mask_keeps_range_and_constant():
  mask = np.zeros((48, 40), np.float32)
  mask[:, 20:] = 1.0
  small = guidance.resize_mask(mask, 12, 10)
  assert small.shape == (12, 10) and small.dtype == np.float32
  assert small.min() >= 0.0 and small.max() <= 1.0
  np.testing.assert_allclose(small[:, :4], 0.0, atol=1e-6)
  np.testing.assert_allclose(small[:, 6:], 1.0, atol=1e-6)
  np.testing.assert_allclose(guidance.resize_mask(np.full((33, 47), 0.25, np.float32), 20, 17), 0.25, atol=1e-5)


def test_load_mask(tmp_path):
  mask = np.zeros((32, 48), np.uint8)
  mask[8:24, 12:36] = 255
  path = tmp_path / "mask.png"
  Image.fromarray(mask).save(path)  # 8-bit grayscale
  same = guidance.load_mask(path, height=32, width=48)
  np.testing.assert_array_equal(same, mask / 255.0)
  small = guidance.load_mask(path, height=16, width=24)  # a wrong size is resized, not refused
  assert small.shape == (16, 24) and 0.0 <= small.min() and small.max() <= 1.0
  np.testing.assert_allclose(small[6:10, 8:16], 1.0, atol=1e-5)
  np.testing.assert_allclose(small[:2], 0.0, atol=1e-5)
  # RGB guides: the mean of the channels.
  rgb = np.zeros((32, 48, 3), np.uint8)
  rgb[..., 0] = 255
  Image.fromarray(rgb).save(tmp_path / "red.png")
  np.testing.assert_allclose(guidance.load_mask(tmp_path / "red.png", height=32, width=48), 1 / 3, rtol=1e-6)
  with pytest.raises(NSTError, match="mask .*does not exist"):
    guidance.load_mask(tmp_path / "missing.png", height=32, width=48)
  (tmp_path / "junk.png").write_bytes(b"not an image")
  with pytest.raises(NSTError, match="sky mask"):
    guidance.load_mask(tmp_path / "junk.png", height=32, width=48, what="sky mask")
