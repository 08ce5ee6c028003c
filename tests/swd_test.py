"""The sliced Wasserstein style loss against a NumPy reference, its invariances, and one real stylisation."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from nst_jax import demo, metrics
from nst_jax.errors import NSTError
from nst_jax.losses import swd
from nst_jax.methods import gatys
from nst_jax.engines.optimize import optimize_image
from nst_jax.objective.config import StylizeConfig, run_settings


def relu_features(seed: int, shape=(1, 6, 7, 5), scale: float = 1.0) -> np.ndarray:
  return (scale * np.maximum(np.random.default_rng(seed).standard_normal(shape), 0.0)).astype(np.float32)


def test_random_directions_are_orthonormal_and_seeded():
  d = swd.random_directions(7, seed=3)
  np.testing.assert_allclose(d.T @ d, np.eye(7), atol=1e-6)
  np.testing.assert_array_equal(d, swd.random_directions(7, seed=3))
  assert not np.allclose(d, swd.random_directions(7, seed=4))


def test_resample_sorted_keeps_same_count_and_interpolates_quantiles():
  values = np.sort(np.random.default_rng(0).standard_normal((50, 3)), axis=0)
  np.testing.assert_allclose(swd.resample_sorted(values, 50), values)
  # Against numpy's quantile at the same midpoint positions (its 'linear' rule on index p * (n - 1)).
  got = swd.resample_sorted(values, 20)
  positions = ((np.arange(20) + 0.5) / 20 * 50 - 0.5).clip(0, 49)
  want = np.stack([np.interp(positions, np.arange(50), values[:, k]) for k in range(3)], axis=1)
  np.testing.assert_allclose(got, want, rtol=1e-12)


def test_layer_loss_matches_numpy_optimal_transport_of_the_projections():
  x, s = relu_features(0), relu_features(1)
  target = swd.style_target([jnp.asarray(s)], positions=42, seed=5)
  got = float(swd.swd_layer_loss(features=jnp.asarray(x), target=target))
  d = swd.random_directions(5, seed=5).astype(np.float64)
  px, ps = x.reshape(-1, 5) @ d, s.reshape(-1, 5) @ d
  # 1-D optimal transport between equal-size samples pairs them in sorted order (scipy's W2 of each slice).
  want = np.mean((np.sort(px, 0) - np.sort(ps, 0)) ** 2) / np.mean(ps**2)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  w1 = np.mean([stats.wasserstein_distance(px[:, k], ps[:, k]) for k in range(5)])
  assert w1 == pytest.approx(np.mean(np.abs(np.sort(px, 0) - np.sort(ps, 0))), rel=1e-9)


def test_layer_loss_ignores_arrangement_and_activation_scale():
  s = relu_features(2)
  target = swd.style_target([jnp.asarray(s)], positions=42, seed=0)
  shuffled = np.random.default_rng(0).permutation(s.reshape(-1, 5)).reshape(s.shape)
  assert float(swd.swd_layer_loss(features=jnp.asarray(shuffled), target=target)) == pytest.approx(0.0, abs=1e-10)
  x = relu_features(3)
  scaled_target = swd.style_target([jnp.asarray(10 * s)], positions=42, seed=0)
  np.testing.assert_allclose(swd.swd_layer_loss(features=jnp.asarray(10 * x), target=scaled_target),
                             swd.swd_layer_loss(features=jnp.asarray(x), target=target), rtol=1e-5)


def test_flat_features_cost_more_than_textured_ones_with_the_same_moments():
  """What the Gram matrix cannot see: a constant map with the style's mean square has a Gram distance of 0 along
  one channel, but a large sliced Wasserstein distance."""
  s = relu_features(4, shape=(1, 16, 16, 1))
  flat = np.full_like(s, np.sqrt(np.mean(s**2)))  # same second moment, so the same 1x1 Gram matrix
  target = swd.style_target([jnp.asarray(s)], positions=256, seed=0)
  np.testing.assert_allclose(np.mean(flat**2), np.mean(s**2), rtol=1e-5)
  assert float(swd.swd_layer_loss(features=jnp.asarray(flat), target=target)) > 0.1
  assert float(swd.swd_layer_loss(features=jnp.asarray(s[:, ::-1]), target=target)) < 1e-10


def test_blend_mixes_the_distributions_in_proportion():
  a = np.zeros((1, 10, 10, 2), np.float32)
  b = np.ones((1, 10, 10, 2), np.float32)
  target = swd.style_target([jnp.asarray(a), jnp.asarray(b)], positions=100, seed=0, blend=[3, 7])
  mixed = np.concatenate([a.reshape(-1, 2)[:30], b.reshape(-1, 2)[:70]]).reshape(1, 10, 10, 2)
  assert float(swd.swd_layer_loss(features=jnp.asarray(mixed), target=target)) == pytest.approx(0.0, abs=1e-10)


@pytest.fixture(scope="module")
def swd_problem(default_weights):
  content = demo.default_content()
  style = demo.swirl_painting(64)
  config = StylizeConfig(size=48, iterations=20, style_loss="swd", content_weight=0.0, tv_weight=0.0, log_every=100)
  return gatys.build_problem(content=content, styles=[style], weights=default_weights, config=config), config


def test_swd_stylisation_lowers_the_style_loss_and_paints_flat_areas(swd_problem):
  problem, config = swd_problem
  result = optimize_image(problem.terms_fn, problem.inputs, problem.x0, run=run_settings(config), progress=False)
  assert result.final_terms["style"] < 0.5 * result.initial_terms["style"]
  style = demo.swirl_painting(48)
  assert metrics.flat_fraction(result.image, style, block=4) <= metrics.flat_fraction(problem.x0, style, block=4)


def test_swd_refuses_masks(default_weights):
  config = StylizeConfig(size=32, style_loss="swd")
  with pytest.raises(NSTError, match="swd"):
    gatys.build_problem(content=demo.default_content(), styles=[demo.swirl_painting(32)] * 2,
                        weights=default_weights, config=config, style_masks=[np.ones((4, 4))] * 2)
