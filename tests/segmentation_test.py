"""Colour-coded segmentation maps: snapping, matching, resizing, and Luan et al.'s guided Gram normalisation."""

import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax.losses import guidance, segmentation
from nst_jax.errors import NSTError

C = segmentation.COLORS


def paint(labels: np.ndarray, names) -> np.ndarray:
  return np.asarray([C[n] for n in names], np.float32)[labels]


def antialiased_map() -> tuple[np.ndarray, np.ndarray]:
  """Blue | red on top, black | white below, with one blended column at each vertical edge and a blended row
  between the halves, as an antialiasing rasteriser draws them; also returns the true label of every pixel
  (-1 for blends)."""
  labels = np.zeros((20, 30), int)  # 0 blue, 1 red, 2 black, 3 white
  labels[:, 15:] = 1
  labels[10:, :15] = 2
  labels[10:, 15:] = 3
  seg = paint(labels, ["blue", "red", "black", "white"])
  truth = labels.copy()
  for rows in (slice(0, 10), slice(10, 20)):
    seg[rows, 15] = 0.5 * seg[rows, 14] + 0.5 * seg[rows, 16]   # blue/red -> (.5, 0, .5); black/white -> grey
    truth[rows, 15] = -1
  seg[10] = 0.5 * seg[9] + 0.5 * seg[11]
  truth[10] = -1
  return seg, truth


def test_antialiased_edges_snap_to_a_neighbouring_region_and_no_pixel_is_dropped():
  seg, truth = antialiased_map()
  assert segmentation.present_colors(seg) == ["blue", "black", "white", "red"]  # no grey, no purple
  masks = segmentation.one_hot_masks(seg, segmentation.present_colors(seg), height=20, width=30)
  total = sum(masks.values())
  np.testing.assert_allclose(total, 1.0, atol=1e-6)  # every pixel belongs to exactly one region
  names = ["blue", "red", "black", "white"]
  for i, name in enumerate(names):
    np.testing.assert_array_equal(masks[name][truth == i], 1.0)
  # Each blended pixel joined one of the regions it lies between (the two left/right, or above/below).
  for y, x in zip(*np.nonzero(truth < 0)):
    owner = next(n for n in names if masks[n][y, x] == 1.0)
    neighbours = {names[t] for t in truth[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].ravel() if t >= 0}
    assert owner in neighbours, (y, x, owner, neighbours)
  # The reference's per-channel threshold drops every blended pixel.
  reference = np.zeros((20, 30), bool)
  for name in C:
    reference |= np.all(np.abs(seg - np.asarray(C[name])) < 0.1, axis=-1)
  # It drops every blend except the nine black/white midpoints, which it calls grey, a region that is not there.
  assert (~reference).sum() == (truth < 0).sum() - 9 > 0


def test_size_mismatch_is_resized_and_masks_partition_the_image():
  labels = np.zeros((33, 41), int)
  labels[:, 20:] = 1
  seg = paint(labels, ["green", "yellow"])
  style_seg = paint(np.repeat([[0, 1]], 16, axis=0).repeat(8, axis=1), ["green", "yellow"])
  got = segmentation.match(seg, style_seg, content_shape=(32, 40), style_shape=(16, 16))
  assert got.names == ("green", "yellow")
  assert got.content.shape == (2, 32, 40) and got.style.shape == (2, 16, 16)
  np.testing.assert_allclose(got.content.sum(axis=0), 1.0, atol=1e-5)
  assert got.content[0, :, :18].min() > 0.99 and got.content[1, :, 22:].min() > 0.99


def test_colours_in_one_map_only():
  content = np.zeros((12, 12), int)
  content[:, 4:8], content[:, 8:] = 1, 2
  style = np.zeros((10, 10), int)
  style[:, 5:] = 1
  style[8:, :] = 2
  got = segmentation.match(paint(content, ["blue", "red", "green"]), paint(style, ["blue", "red", "yellow"]),
                           content_shape=(12, 12), style_shape=(10, 10))
  assert got.names == ("blue", "red", segmentation.UNMATCHED)
  # Green (content only) is styled by the whole style image; yellow (style only) is ignored.
  np.testing.assert_array_equal(got.content[2], (content == 2).astype(np.float32))
  np.testing.assert_array_equal(got.style[2], np.ones((10, 10)))
  np.testing.assert_array_equal(got.style[1], ((style == 1)).astype(np.float32))


def test_no_maps_or_no_common_colour_is_one_region_and_bad_maps_are_refused():
  for content_seg, style_seg in [(None, None), (paint(np.zeros((8, 8), int), ["red"]),
                                                paint(np.zeros((8, 8), int), ["blue"]))]:
    got = segmentation.match(content_seg, style_seg, content_shape=(6, 7), style_shape=(5, 4))
    assert got.names == ("all",)
    np.testing.assert_array_equal(got.content, np.ones((1, 6, 7)))
    np.testing.assert_array_equal(got.style, np.ones((1, 5, 4)))
  with pytest.raises(NSTError, match="`content_seg`"):
    segmentation.match(np.full((8, 8, 3), 0.3), paint(np.zeros((8, 8), int), ["red"]), content_shape=(8, 8),
                       style_shape=(8, 8))
  with pytest.raises(NSTError, match="both"):
    segmentation.match(None, paint(np.zeros((8, 8), int), ["red"]), content_shape=(8, 8), style_shape=(8, 8))


def test_channels_mass_gram_and_loss_match_numpy():
  """G = (F⊙m)(F⊙m)ᵀ / (C·H·W·mean(m)); loss = sum_r mean_r · E(G_r, A_r), E = sum((G − A)²) / (4C²)."""
  rng = np.random.default_rng(0)
  h, w, c, r = 7, 9, 5, 3
  feats = rng.normal(size=(1, h, w, c)).astype(np.float32)
  masks = rng.uniform(0, 1, (r, h, w)).astype(np.float32)
  masks[2] = 0.0  # an empty region: dropped
  targets = rng.normal(size=(r, c, c)).astype(np.float32)
  want_gram = np.zeros((r, c, c))
  for k in range(r):
    weighted = feats[0].reshape(h * w, c).astype(np.float64) * masks[k].reshape(h * w, 1)
    if masks[k].mean() > 0:
      want_gram[k] = weighted.T @ weighted / (c * h * w * masks[k].mean())
  got_gram = guidance.guided_gram(jnp.asarray(feats), jnp.asarray(masks), normalization="channels_mass")
  np.testing.assert_allclose(got_gram, want_gram, rtol=1e-5, atol=1e-6)
  means = segmentation.region_means({"x": jnp.asarray(masks)})["x"]
  np.testing.assert_allclose(means, masks.mean(axis=(1, 2)), rtol=1e-6)
  want_loss = sum(masks[k].mean() * np.sum((want_gram[k] - targets[k]) ** 2) / (4 * c * c) for k in range(2))
  got_loss = guidance.guided_style_loss(features={"x": jnp.asarray(feats)}, target_grams={"x": jnp.asarray(targets)},
                                        masks={"x": jnp.asarray(masks)}, region_weights=means,
                                        layer_weights={"x": 1.0}, normalization="channels_mass")
  np.testing.assert_allclose(float(got_loss), want_loss, rtol=1e-5)
  # A ones guide: the plain Gram matrix divided by C (the default normalisation gives it undivided).
  ones = jnp.ones((1, h, w))
  plain = feats[0].reshape(h * w, c).T @ feats[0].reshape(h * w, c) / (h * w)
  np.testing.assert_allclose(guidance.guided_gram(jnp.asarray(feats), ones, normalization="channels_mass")[0],
                             plain / c, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(guidance.guided_gram(jnp.asarray(feats), ones)[0], plain, rtol=1e-5, atol=1e-6)


def test_style_targets_carry_style_masks_through_the_network():
  rng = np.random.default_rng(1)
  masks = np.zeros((2, 16, 16), np.float32)
  masks[0, :, :8], masks[1, :, 8:] = 1, 1
  feats = {"relu1_1": jnp.asarray(rng.normal(size=(1, 16, 16, 4)), jnp.float32),
           "relu2_1": jnp.asarray(rng.normal(size=(1, 8, 8, 6)), jnp.float32)}
  got = segmentation.style_targets("vgg16", feats, masks, ("relu1_1", "relu2_1"))
  carried = guidance.masks_at_layers("vgg16", jnp.asarray(masks), ("relu1_1", "relu2_1"))
  for name in feats:
    np.testing.assert_allclose(got[name], guidance.guided_gram(feats[name], carried[name],
                                                               normalization="channels_mass"), rtol=1e-6)
    assert got[name].shape == (2, feats[name].shape[-1], feats[name].shape[-1])
  assert not np.allclose(got["relu1_1"][0], got["relu1_1"][1])
