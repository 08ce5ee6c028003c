"""Li & Wand (2016)'s MRF loss against brute-force NumPy patch matching."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nst_jax.losses import mrf


def relu_features(seed: int, shape=(1, 8, 8, 8)) -> np.ndarray:
  """Random non-negative, partly zero maps, like the ReLU layers the loss is used on."""
  return np.maximum(np.random.default_rng(seed).standard_normal(shape), 0.0).astype(np.float32)


def numpy_patches(x: np.ndarray, k: int, stride: int) -> np.ndarray:
  h, w, _ = x.shape
  return np.stack([x[i:i + k, j:j + k] for i in range(0, h - k + 1, stride) for j in range(0, w - k + 1, stride)])


def numpy_nearest(x: np.ndarray, s: np.ndarray, k: int, stride: int) -> np.ndarray:
  """argmax_j of the full normalised cross-correlation, x-norm included, in float64."""
  px = numpy_patches(x.astype(np.float64), k, stride).reshape(-1, k * k * x.shape[-1])
  ps = numpy_patches(s.astype(np.float64), k, 1).reshape(-1, k * k * s.shape[-1])
  ncc = (px @ ps.T) / (np.linalg.norm(px, axis=1)[:, None] * np.linalg.norm(ps, axis=1)[None, :])
  return np.argmax(ncc, axis=1)


@pytest.mark.parametrize("k,stride", [(3, 1), (2, 2), (3, 2)])
def test_extract_patches_matches_slicing(k, stride):
  x = np.random.default_rng(0).standard_normal((7, 8, 5)).astype(np.float32)
  got = jax.jit(mrf.extract_patches, static_argnums=(1, 2))(x, k, stride)
  np.testing.assert_array_equal(got, numpy_patches(x, k, stride))


def test_patch_bank():
  s = relu_features(1)
  s[0, :3, :3] = 0.0  # one all-zero patch: normalised to zeros, not NaN
  bank = mrf.style_patch_bank(s)
  assert bank["patches"].shape == (36, 3, 3, 8)
  np.testing.assert_array_equal(bank["patches"], numpy_patches(s[0], 3, 1))
  norms = np.linalg.norm(np.asarray(bank["normalized"]).reshape(36, -1), axis=1)
  np.testing.assert_array_equal(bank["normalized"][0], 0.0)
  np.testing.assert_allclose(norms[1:], 1.0, rtol=1e-5)
  assert mrf.style_patch_bank(s[0], patch_size=2, stride=2)["patches"].shape == (16, 2, 2, 8)


@pytest.mark.parametrize("stride", [1, 2])
def test_nearest_patch_indices_match_brute_force_ncc(stride):
  rng = np.random.default_rng(2)
  x = rng.standard_normal((1, 9, 8, 8)).astype(np.float32)
  s = rng.standard_normal((1, 8, 10, 8)).astype(np.float32)
  bank = mrf.style_patch_bank(s)
  got = jax.jit(mrf.nearest_patch_indices, static_argnames="stride")(x, bank, stride=stride)
  np.testing.assert_array_equal(got, numpy_nearest(x[0], s[0], 3, stride))


def test_loss_formula():
  rng = np.random.default_rng(3)
  x = rng.standard_normal((1, 8, 8, 8)).astype(np.float32)
  s = rng.standard_normal((1, 8, 8, 8)).astype(np.float32)
  for k, stride in [(3, 1), (2, 2)]:
    bank = mrf.style_patch_bank(s, patch_size=k)
    nn = numpy_nearest(x[0], s[0], k, stride)
    px = numpy_patches(x[0].astype(np.float64), k, stride)
    ps = numpy_patches(s[0].astype(np.float64), k, 1)
    want = np.sum((px - ps[nn]) ** 2) / (px.size)  # plain sum / (patches * k*k*C)
    got = mrf.mrf_loss(features=x, bank=bank, patch_size=k, stride=stride)
    np.testing.assert_allclose(got, want, rtol=1e-5)
  with pytest.raises(ValueError, match="patch_size"):
    mrf.mrf_loss(features=x, bank=mrf.style_patch_bank(s), patch_size=5)


def test_zero_when_x_is_the_style():
  s = relu_features(4)
  bank = mrf.style_patch_bank(s)
  np.testing.assert_array_equal(mrf.nearest_patch_indices(s, bank), np.arange(36))
  assert float(mrf.mrf_loss(features=s, bank=bank)) == 0.0


def test_jit_matches_eager_and_layer_sum():
  rng = np.random.default_rng(5)
  feats = {"a": rng.standard_normal((1, 8, 8, 8)).astype(np.float32),
           "b": rng.standard_normal((1, 6, 5, 16)).astype(np.float32)}
  banks = {"a": mrf.style_patch_bank(relu_features(6)),
           "b": mrf.style_patch_bank(relu_features(7, (1, 5, 7, 16)), patch_size=2)}
  weights = {"a": 0.25, "b": 3.0}
  eager = mrf.mrf_style_loss(features=feats, banks=banks, layer_weights=weights)
  jitted = jax.jit(lambda f, b: mrf.mrf_style_loss(features=f, banks=b, layer_weights=weights))(feats, banks)
  np.testing.assert_allclose(jitted, eager, rtol=1e-6)
  want = sum(w * mrf.mrf_loss(features=feats[n], bank=banks[n]) for n, w in weights.items())
  np.testing.assert_allclose(eager, want, rtol=1e-6)
  default = mrf.mrf_style_loss(features=feats, banks=banks)  # w_l = 1 / number of layers
  np.testing.assert_allclose(default, sum(mrf.mrf_loss(features=feats[n], bank=banks[n]) for n in feats) / 2,
                             rtol=1e-6)


def test_gradient_descent_lowers_loss():
  bank = mrf.style_patch_bank(relu_features(8))
  x = jnp.asarray(np.random.default_rng(9).standard_normal((1, 8, 8, 8)), jnp.float32)
  opt = optax.adam(0.1)
  loss = lambda x: mrf.mrf_loss(features=x, bank=bank)

  @jax.jit
  def step(x, state):
    grad = jax.grad(loss)(x)
    assert grad.shape == x.shape
    updates, state = opt.update(grad, state)
    return optax.apply_updates(x, updates), state

  start = float(loss(x))
  state = opt.init(x)
  for _ in range(50):
    x, state = step(x, state)
  assert float(loss(x)) < start / 5


def test_patch_weights_restrict_the_loss_to_a_region():
  rng = np.random.default_rng(7)
  style = rng.standard_normal((8, 8, 4)).astype(np.float32)
  x = rng.standard_normal((8, 8, 4)).astype(np.float32)
  bank = mrf.style_patch_bank(style)
  mask = np.zeros((8, 8), np.float32)
  mask[:, :4] = 1.0
  weights = mrf.patch_centre_weights(jnp.asarray(mask), 3)
  assert weights.shape == (6, 6)
  full = float(mrf.mrf_loss(features=x, bank=bank))
  np.testing.assert_allclose(float(mrf.mrf_loss(features=x, bank=bank, patch_weights=jnp.ones((6, 6)))), full,
                             rtol=1e-6)
  # Changing x outside the region (patch centres in columns >= 4, i.e. patches not touching columns < 3) leaves
  # the region's loss unchanged only where no region patch sees the change: edit the last two columns.
  edited = x.copy()
  edited[:, 6:] += 5.0
  region = lambda f: float(mrf.mrf_loss(features=f, bank=bank, patch_weights=weights))
  np.testing.assert_allclose(region(edited), region(x), rtol=1e-6)
  assert float(mrf.mrf_loss(features=edited, bank=bank)) > full
