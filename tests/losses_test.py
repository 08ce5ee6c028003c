"""Loss functions against direct NumPy transcriptions of Gatys et al. (2016)'s formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import losses


@pytest.fixture(scope="module")
def feats():
  rng = np.random.default_rng(0)
  return {
      "a": rng.standard_normal((1, 6, 5, 4)).astype(np.float32),
      "b": rng.standard_normal((1, 3, 4, 8)).astype(np.float32),
  }


@pytest.fixture(scope="module")
def other(feats):
  rng = np.random.default_rng(1)
  return {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in feats.items()}


def test_gram_matrix_is_normalised_outer_product(feats):
  f = feats["a"][0].reshape(-1, 4).astype(np.float64)  # M x N
  want = f.T @ f / f.shape[0]
  got = jax.jit(losses.gram_matrix)(feats["a"])
  np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-6)


def test_style_loss_is_gatys_el(feats, other):
  """E_l = 1/(4 N^2 M^2) sum_ij (G_ij - A_ij)^2 with unnormalised Gram matrices; w_l = 1/L by default."""
  want = 0.0
  for name in feats:
    f = feats[name][0].reshape(-1, feats[name].shape[-1]).astype(np.float64)
    s = other[name][0].reshape(-1, other[name].shape[-1]).astype(np.float64)
    m, n = f.shape
    want += 0.5 * np.sum((f.T @ f - s.T @ s) ** 2) / (4 * n**2 * m**2)
  targets = {k: losses.gram_matrix(v) for k, v in other.items()}
  got = jax.jit(lambda f, t: losses.style_loss(features=f, target_grams=t))(feats, targets)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_content_loss_weighted_mse(feats, other):
  weights = {"a": 0.25, "b": 2.0}
  want = sum(w * np.mean((feats[k].astype(np.float64) - other[k]) ** 2) for k, w in weights.items())
  got = losses.content_loss(features=feats, targets=other, layer_weights=weights)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # Only the layers in `targets` count.
  only_a = losses.content_loss(features=feats, targets={"a": other["a"]})
  np.testing.assert_allclose(only_a, np.mean((feats["a"].astype(np.float64) - other["a"]) ** 2), rtol=1e-5)


def test_range_penalty_is_the_mean_squared_distance_to_the_unit_interval(feats):
  img = feats["b"]
  want = np.mean(np.where(img < 0, img, np.where(img > 1, img - 1, 0.0)) ** 2)
  np.testing.assert_allclose(losses.range_penalty(image=img), want, rtol=1e-6)
  inside = np.clip(img, 0, 1)
  assert float(losses.range_penalty(image=inside)) == 0.0
  assert not np.any(jax.grad(lambda x: losses.range_penalty(image=x))(jnp.asarray(inside)))
  grad = np.asarray(jax.grad(lambda x: losses.range_penalty(image=x))(jnp.asarray(img)))
  assert np.all(grad[img < 0] < 0) and np.all(grad[img > 1] > 0)  # descent moves values back into [0, 1]


def test_total_variation(feats):
  img = feats["b"]
  want = np.mean(np.diff(img, axis=1) ** 2) + np.mean(np.diff(img, axis=2) ** 2)
  np.testing.assert_allclose(losses.total_variation_loss(image=img), want, rtol=1e-5)
  assert float(losses.total_variation_loss(image=jnp.ones((1, 8, 8, 3)))) == 0.0


def test_losses_vanish_at_target_and_have_zero_gradient_there(feats):
  grams = {k: losses.gram_matrix(v) for k, v in feats.items()}
  value, grad = jax.value_and_grad(lambda f: losses.style_loss(features=f, target_grams=grams))(feats)
  assert abs(float(value)) < 1e-12  # equal up to float rounding of the two Gram computations
  assert all(float(jnp.max(jnp.abs(g))) < 1e-6 for g in jax.tree.leaves(grad))
  assert float(losses.content_loss(features=feats, targets=feats)) == 0.0


def test_style_loss_gradient_matches_finite_differences(feats, other):
  targets = {k: losses.gram_matrix(v) for k, v in other.items()}
  loss = lambda a: losses.style_loss(features={"a": a}, target_grams={"a": targets["a"]})
  x = jnp.asarray(feats["a"], jnp.float64) if jax.config.jax_enable_x64 else jnp.asarray(feats["a"])
  grad = jax.grad(loss)(x)
  direction = np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
  eps = 1e-2
  numeric = (loss(x + eps * direction) - loss(x - eps * direction)) / (2 * eps)
  np.testing.assert_allclose(np.sum(np.asarray(grad) * direction), numeric, rtol=2e-3)
