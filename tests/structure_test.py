"""Structure preservation against NumPy/SciPy transcriptions: Li et al.'s Laplacian loss, the HED head (Xie & Tu)
on random and on the real weights, and the depth regions."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
from PIL import Image

from nst_jax.losses import structure
from nst_jax.models import vgg
from nst_jax.errors import NSTError
from nst_jax.models.preprocessing import CAFFE_VGG, HED_CAFFE
from nst_jax.weights.format import VGGWeights

from vgg_test import numpy_vgg, random_params

LAPLACIAN = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float64)

# ----------------------------------------------------------------------------------------------------------------
# Laplacian loss


def ref_pool(image: np.ndarray, p: int) -> np.ndarray:
  """p x p block means of one (H, W, C) image, odd sizes floored, by explicit loops."""
  h, w = image.shape[0] // p, image.shape[1] // p
  return np.array([[image[i * p:(i + 1) * p, j * p:(j + 1) * p].mean(axis=(0, 1)) for j in range(w)]
                   for i in range(h)])


def ref_laplacian(image: np.ndarray) -> np.ndarray:
  """D applied to every channel of one (H, W, C) image, summed over channels, VALID region only."""
  per_channel = [scipy.ndimage.correlate(image[..., c].astype(np.float64), LAPLACIAN, mode="constant")
                 for c in range(image.shape[-1])]
  return np.sum(per_channel, axis=0)[1:-1, 1:-1]


def test_laplacian_matches_scipy_on_a_batch():
  images = np.random.default_rng(0).uniform(0, 1, (2, 9, 11, 3)).astype(np.float32)
  got = jax.jit(structure.laplacian)(images)
  assert got.shape == (2, 7, 9)
  for i in range(2):
    np.testing.assert_allclose(got[i], ref_laplacian(images[i]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_pooled_laplacian_matches_reference(p):
  image = np.random.default_rng(p).uniform(0, 1, (23, 19, 3)).astype(np.float32)  # not divisible: floor
  got = structure.pooled_laplacian(jnp.asarray(image), pool_size=p)
  np.testing.assert_allclose(got, ref_laplacian(ref_pool(image, p)), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def lap_pair():
  rng = np.random.default_rng(3)
  content = rng.uniform(0, 1, (37, 41, 3)).astype(np.float32)
  image = np.clip(content + 0.2 * rng.standard_normal(content.shape), 0, 1).astype(np.float32)
  return content, image


def test_laplacian_loss_is_sum_of_means_and_skips_too_coarse_pools(lap_pair):
  content, image = lap_pair
  targets = structure.content_laplacians(jnp.asarray(content), (2, 4, 16))
  assert sorted(targets) == [2, 4]  # 37 // 16 = 2 pooled rows: no 3x3 Laplacian
  want = sum(np.mean((ref_laplacian(ref_pool(image, p)) - ref_laplacian(ref_pool(content, p))) ** 2) for p in (2, 4))
  got = jax.jit(lambda x, t: structure.laplacian_loss(image=x, content_laplacians=t))(image, targets)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  only4 = structure.laplacian_loss(image=image, content_laplacians=targets, pool_sizes=(4,))
  np.testing.assert_allclose(only4, np.mean((ref_laplacian(ref_pool(image, 4))
                                             - ref_laplacian(ref_pool(content, 4))) ** 2), rtol=1e-5)


def test_laplacian_loss_vanishes_at_content_with_finite_gradient(lap_pair):
  content, image = lap_pair
  targets = structure.content_laplacians(content, (1, 4))
  loss = lambda x: structure.laplacian_loss(image=x, content_laplacians=targets)
  value, grad = jax.value_and_grad(loss)(jnp.asarray(content))
  assert float(value) == 0.0 and float(jnp.max(jnp.abs(grad))) == 0.0
  value, grad = jax.value_and_grad(loss)(jnp.asarray(image))
  assert float(value) > 0 and bool(jnp.all(jnp.isfinite(grad))) and float(jnp.max(jnp.abs(grad))) > 0
  # The gradient is the true one: a central difference along a random direction agrees.
  direction = np.random.default_rng(4).standard_normal(image.shape).astype(np.float32)
  eps = 1e-2
  numeric = (loss(image + eps * direction) - loss(image - eps * direction)) / (2 * eps)
  np.testing.assert_allclose(np.sum(np.asarray(grad) * direction), numeric, rtol=1e-3)


def test_laplacian_sizes_errors():
  tiny = jnp.zeros((32, 32, 3))
  with pytest.raises(ValueError, match=r"no Laplacian pool size in \(16, 64\) fits a 32x32 image"):
    structure.content_laplacians(tiny, (16, 64))
  assert structure.usable_pool_sizes((32, 48), (4, 8, 16)) == (4, 8)
  with pytest.raises(ValueError, match="larger than the 32x32 image"):
    structure.average_pool(tiny, pool_size=64)
  with pytest.raises(ValueError, match="at least 3x3"):
    structure.laplacian(jnp.zeros((2, 5, 3)))
  targets = structure.content_laplacians(tiny, (4,))
  with pytest.raises(ValueError, match="must have the content's size"):
    structure.laplacian_loss(image=jnp.zeros((40, 32, 3)), content_laplacians=targets)
  with pytest.raises(ValueError, match="no content Laplacian for pool size 16"):
    structure.laplacian_loss(image=tiny, content_laplacians=targets, pool_sizes=(4, 16))


# ----------------------------------------------------------------------------------------------------------------
# HED: the head against NumPy on random weights


def random_hed_extras(seed: int = 0) -> dict[str, np.ndarray]:
  """Side kernels scaled so that the logits stay of order one (the sigmoid is then not saturated)."""
  rng = np.random.default_rng(seed)
  extras = {}
  for k, channels in enumerate((64, 128, 256, 512, 512), start=1):
    extras[f"hed/dsn{k}/kernel"] = (rng.standard_normal((1, 1, channels, 1)) / np.sqrt(channels)).astype(np.float32)
    extras[f"hed/dsn{k}/bias"] = rng.standard_normal(1).astype(np.float32)
  extras["hed/fuse/kernel"] = rng.uniform(0.1, 0.4, (1, 1, 5, 1)).astype(np.float32)
  extras["hed/fuse/bias"] = rng.standard_normal(1).astype(np.float32)
  return extras


def ref_upsample(x: np.ndarray, h: int, w: int) -> np.ndarray:
  """Bilinear resize of (h0, w0) to (h, w) with half-pixel centres and clamped borders (tf.image.resize)."""
  def matrix(n_in: int, n_out: int) -> np.ndarray:
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
      src = min(max((i + 0.5) * n_in / n_out - 0.5, 0.0), n_in - 1)
      i0 = int(np.floor(src))
      i1 = min(i0 + 1, n_in - 1)
      m[i, i0] += 1 - (src - i0)
      m[i, i1] += src - i0
    return m
  return matrix(x.shape[0], h) @ x @ matrix(x.shape[1], w).T


def ref_hed_logits(params: dict, extras: dict, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Side and fused logits of HED on one preprocessed (H, W, 3) image: edge-pad to a multiple of 16, NumPy VGG16,
  1x1 side convolutions, bilinear upsampling to the padded size, crop, 1x1 fuse."""
  h, w, _ = image.shape
  hp, wp = -(-h // 16) * 16, -(-w // 16) * 16
  padded = np.pad(image, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")
  feats = numpy_vgg("vgg16", params, padded, "max")
  sides = []
  for k, layer in enumerate(structure.HED_SIDE_LAYERS, start=1):
    side = feats[layer] @ extras[f"hed/dsn{k}/kernel"][0, 0, :, 0].astype(np.float64) + extras[f"hed/dsn{k}/bias"][0]
    sides.append(ref_upsample(side, hp, wp)[:h, :w])
  sides = np.stack(sides, axis=-1)
  fused = sides @ extras["hed/fuse/kernel"][0, 0, :, 0].astype(np.float64) + extras["hed/fuse/bias"][0]
  return sides, fused


@pytest.mark.parametrize("shape", [(32, 32), (40, 24)])  # a multiple of 16, and one that needs padding
def test_hed_matches_numpy_reference_on_random_weights(shape):
  params, extras = random_params("vgg16"), random_hed_extras()
  image = np.random.default_rng(5).uniform(-1, 1, (*shape, 3)).astype(np.float32)
  sides = structure.hed_side_logits(params, extras, jnp.asarray(image)[None])
  edges = jax.jit(structure.hed_edges)(params, extras, jnp.asarray(image)[None])
  want_sides, want_fused = ref_hed_logits(params, extras, image)
  assert sides.shape == (1, *shape, 5) and edges.shape == (1, *shape)
  scale = np.max(np.abs(want_sides), axis=(0, 1))
  np.testing.assert_allclose(np.asarray(sides[0]) / scale, want_sides / scale, atol=1e-4)
  assert 0.05 < np.std(want_fused) and np.max(np.abs(want_fused)) < 20  # the check below is not saturated
  np.testing.assert_allclose(edges[0], 1 / (1 + np.exp(-want_fused)), atol=1e-4)


def test_edge_loss_on_random_weights_vanishes_at_content_and_has_finite_gradient():
  params, extras = random_params("vgg16"), random_hed_extras()
  rng = np.random.default_rng(6)
  content = rng.uniform(0, 1, (16, 24, 3)).astype(np.float32)  # 24: padded to 32 inside
  # Jitted, with the parameters as arguments: run op by op, HED's forward and backward compile hundreds of
  # single-op programs (~20 s on CI's CPU); as programs, two compilations.
  target = jax.jit(lambda c, p, e: structure.edge_target(content_rgb01=c, hed_params=p, hed_extras=e,
                                                         preprocessing=HED_CAFFE))(content, params, extras)
  assert target.shape == (16, 24)
  loss = lambda x, p, e: structure.edge_loss(image_rgb01=x, target_edges=target, hed_params=p, hed_extras=e,
                                             preprocessing=HED_CAFFE)
  value_and_grad = jax.jit(jax.value_and_grad(loss))
  assert float(value_and_grad(jnp.asarray(content), params, extras)[0]) < 1e-12
  value, grad = value_and_grad(jnp.asarray(rng.uniform(0, 1, content.shape), jnp.float32), params, extras)
  assert float(value) > 0 and grad.shape == content.shape and bool(jnp.all(jnp.isfinite(grad)))
  assert float(jnp.max(jnp.abs(grad))) > 0


def test_require_hed():
  params = {name: {"kernel": np.zeros(k, np.float32), "bias": np.zeros(b, np.float32)}
            for name, (k, b) in vgg.conv_shapes("vgg16").items()}
  hed = VGGWeights("vgg16", params, HED_CAFFE, "test", "0" * 64, extras=random_hed_extras())
  structure.require_hed(hed)
  for plain in (VGGWeights("vgg19", {}, CAFFE_VGG, "vgg19-keras", "0" * 64),
                VGGWeights("vgg16", params, CAFFE_VGG, "vgg16-keras", "0" * 64)):
    with pytest.raises(NSTError, match="the edge loss needs HED weights: run python -m nst_jax weights fetch "
                                       "hed-vgg16"):
      structure.require_hed(plain)


# ----------------------------------------------------------------------------------------------------------------
# HED: the real weights


@pytest.fixture(scope="module")
def hed_weights(default_weights):
  structure.require_hed(default_weights)
  return default_weights


def square_image(size: int = 64, lo: int = 20, hi: int = 44) -> np.ndarray:
  image = np.zeros((size, size, 3), np.float32)
  image[lo:hi, lo:hi] = 1.0
  return image


@pytest.fixture(scope="module")
def square_edges(hed_weights):
  """One full HED forward of the white square on black, (64, 64)."""
  x = hed_weights.preprocessing.apply(square_image())[None]
  return np.asarray(jax.jit(structure.hed_edges)(hed_weights.params, hed_weights.extras, x)[0])


def test_real_hed_fires_on_the_square_outline_and_not_on_flat_areas(square_edges):
  lo, hi = 20, 44
  yy, xx = np.mgrid[:64, :64]
  # Distance (in the max norm) of each pixel centre from the square's outline, which lies on pixel boundaries.
  inside = np.maximum(np.abs(yy + 0.5 - 32), np.abs(xx + 0.5 - 32))
  dist = np.abs(inside - (hi - lo) / 2)
  outline = dist <= 1.0
  flat = (dist >= 6) & (yy >= 6) & (yy < 58) & (xx >= 6) & (xx < 58)  # away from the outline and the frame
  assert np.all((square_edges >= 0) & (square_edges <= 1))
  on, off = square_edges[outline].mean(), square_edges[flat].mean()
  assert on >= 3 * off and on > 0.5, (on, off)  # measured: 0.98 on the outline, 0.002 on flat areas


def test_real_edge_loss_vanishes_at_content_and_grows_with_blur(hed_weights, square_edges):
  w = hed_weights
  loss = jax.jit(lambda x, t: structure.edge_loss(image_rgb01=x, target_edges=t, hed_params=w.params,
                                                  hed_extras=w.extras, preprocessing=w.preprocessing))
  content = square_image()
  values = [float(loss(content, square_edges))]
  for sigma in (1.0, 3.0):
    values.append(float(loss(scipy.ndimage.gaussian_filter(content, (sigma, sigma, 0)), square_edges)))
  assert values[0] < 1e-10 and 0 < values[1] < values[2], values


# ----------------------------------------------------------------------------------------------------------------
# Depth regions


@pytest.mark.parametrize("num_regions", [1, 2, 3, 5])
@pytest.mark.parametrize("softness", [0.0, 0.05, 0.3])
def test_depth_regions_partition_unity(num_regions, softness):
  depth = np.random.default_rng(7).uniform(0, 1, (13, 17)).astype(np.float32)
  masks = np.asarray(structure.depth_regions(depth, num_regions=num_regions, softness=softness))
  assert masks.shape == (num_regions, 13, 17)
  assert masks.min() >= 0 and masks.max() <= 1
  np.testing.assert_allclose(masks.sum(axis=0), 1.0, atol=1e-6)
  if softness == 0:  # hard: one-hot in the equal-width bin, nearest first
    want = np.minimum(np.floor((1 - depth) * num_regions), num_regions - 1).astype(int)
    np.testing.assert_array_equal(np.argmax(masks, axis=0), want)
    np.testing.assert_array_equal(masks.max(axis=0), 1.0)


def test_depth_regions_order_near_to_far():
  ramp = np.linspace(0, 1, 41, dtype=np.float32)[None, :].repeat(3, axis=0)  # depth grows to the right
  masks = np.asarray(jax.jit(lambda d: structure.depth_regions(d, num_regions=3, softness=0.1))(ramp))
  near, far = masks[:, 0, -1], masks[:, 0, 0]
  assert np.argmax(near) == 0 and near[0] > 0.9
  assert np.argmax(far) == 2 and far[2] > 0.9
  # The winning region moves monotonically from the last (far) to the first (near) as depth increases.
  assert np.all(np.diff(np.argmax(masks[:, 0], axis=0)) <= 0)
  # Region 0's weight only grows with depth, the last region's only falls.
  assert np.all(np.diff(masks[0, 0]) >= 0) and np.all(np.diff(masks[2, 0]) <= 0)


def test_depth_regions_constant_and_out_of_range_depth():
  for value in (0.0, 0.5, 1.0, 1.7, -3.0):
    masks = np.asarray(structure.depth_regions(np.full((4, 5), value, np.float32), num_regions=3))
    assert np.all(np.isfinite(masks))
    np.testing.assert_allclose(masks.sum(axis=0), 1.0, atol=1e-6)
    assert np.all(masks == masks[:, :1, :1])  # no spatial variation: effectively a single region
  with pytest.raises(ValueError, match="num_regions"):
    structure.depth_regions(np.zeros((4, 4)), num_regions=0)
  with pytest.raises(ValueError, match="softness"):
    structure.depth_regions(np.zeros((4, 4)), softness=-1.0)


def test_depth_region_scales_and_weights():
  np.testing.assert_allclose(structure.depth_region_scales(3), [2.0, 1.0, 0.5])
  for n in (2, 4, 7):
    scales = np.array(structure.depth_region_scales(n, near_scale=3.0, far_scale=0.75))
    np.testing.assert_allclose([scales[0], scales[-1]], [3.0, 0.75])
    assert np.all(np.diff(scales) < 0)
    np.testing.assert_allclose(scales[1:] / scales[:-1], (0.25) ** (1 / (n - 1)))  # geometric: constant ratio
    weights = np.array(structure.depth_region_weights(n))
    np.testing.assert_allclose([weights[0], weights[-1]], [1.5, 0.75])
    assert np.all(np.diff(weights) < 0)
  np.testing.assert_allclose(structure.depth_region_scales(1), [1.0])  # sqrt(2 * 0.5)
  np.testing.assert_allclose(structure.depth_region_weights(1), [np.sqrt(1.5 * 0.75)])
  with pytest.raises(ValueError, match="positive"):
    structure.depth_region_scales(3, far_scale=0.0)


def test_load_depth(tmp_path):
  gradient = np.tile(np.linspace(40, 200, 30), (20, 1)).astype(np.uint8)  # nearer to the right, not full range
  Image.fromarray(gradient).save(tmp_path / "depth.png")
  depth = structure.load_depth(tmp_path / "depth.png", height=10, width=15)
  assert depth.shape == (10, 15) and depth.dtype == np.float32
  np.testing.assert_allclose([depth.min(), depth.max()], [0.0, 1.0], atol=1e-6)
  assert np.all(np.diff(depth.mean(axis=0)) > 0)
  inverted = structure.load_depth(tmp_path / "depth.png", height=10, width=15, invert=True)
  np.testing.assert_allclose(inverted, 1.0 - depth, atol=1e-6)

  Image.fromarray(np.full((8, 8, 3), 77, np.uint8)).save(tmp_path / "flat.png")
  flat = structure.load_depth(tmp_path / "flat.png", height=6, width=9)
  np.testing.assert_array_equal(flat, np.full((6, 9), 0.5, np.float32))

  with pytest.raises(NSTError, match="depth map .* does not exist"):
    structure.load_depth(tmp_path / "missing.png", height=4, width=4)
