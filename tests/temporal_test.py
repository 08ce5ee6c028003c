"""Ruder et al.'s temporal losses (nst_jax/losses/temporal.py): zero when a frame is its warped predecessor where the
flow is reliable, values against NumPy, gradients against finite differences, long-term weights against the
paper's definition written as a loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import demo
from nst_jax.losses import temporal
from nst_jax.video import reliability, warp


def numpy_temporal(image, warped, mask) -> float:
  image, warped, mask = (np.asarray(a, np.float64) for a in (image, warped, mask))
  return float(np.sum(mask[..., None] * (image - warped) ** 2) / image.size)


@pytest.fixture(scope="module")
def inputs():
  rng = np.random.default_rng(0)
  image = rng.uniform(0, 1, (12, 10, 3)).astype(np.float32)
  warped = rng.uniform(0, 1, (12, 10, 3)).astype(np.float32)
  mask = (rng.uniform(0, 1, (12, 10)) > 0.3).astype(np.float32)
  return image, warped, mask


def test_zero_when_the_frame_is_its_warped_predecessor():
  frames, exact = demo.camera_pan(demo.default_content(), frames=2, size=(40, 48), velocity=(3, 2))
  backward = np.broadcast_to(-exact, (40, 48, 2))
  warped = warp.warp(frames[0], backward)
  mask = reliability.reliability(backward, -backward)
  assert float(jnp.mean(mask)) > 0.8
  # Exact where the pan's flow is reliable; the uncovered strip differs but has weight 0
  assert float(temporal.temporal_loss(image=frames[1], warped_previous=warped, reliability=mask)) == 0.0
  assert numpy_temporal(frames[1], warped, np.ones((40, 48))) > 1e-4


def test_value_is_the_masked_mean_over_pixels_and_channels(inputs):
  image, warped, mask = inputs
  value = temporal.temporal_loss(image=image, warped_previous=warped, reliability=mask)
  np.testing.assert_allclose(float(value), numpy_temporal(image, warped, mask), rtol=1e-6)


def test_gradient_matches_finite_differences(inputs):
  image, warped, mask = inputs
  grad = np.asarray(jax.grad(lambda x: temporal.temporal_loss(image=x, warped_previous=warped,
                                                              reliability=mask))(jnp.asarray(image)))
  rng = np.random.default_rng(1)
  step = 1e-4
  for index in zip(*(rng.integers(0, n, 25) for n in image.shape)):
    plus, minus = image.astype(np.float64), image.astype(np.float64)
    plus[index] += step
    minus[index] -= step
    numeric = (numpy_temporal(plus, warped, mask) - numpy_temporal(minus, warped, mask)) / (2 * step)
    np.testing.assert_allclose(grad[index], numeric, rtol=1e-3, atol=1e-8)


def loop_long_term_weights(masks: np.ndarray) -> np.ndarray:
  """c_long_j = max(c_j - sum_{l < j} c_l, 0), pixel by pixel."""
  out = np.zeros_like(masks)
  for j in range(len(masks)):
    for y in range(masks.shape[1]):
      for x in range(masks.shape[2]):
        out[j, y, x] = max(masks[j, y, x] - sum(masks[l, y, x] for l in range(j)), 0.0)
  return out


def test_long_term_weights_count_each_pixel_for_its_nearest_reliable_frame(inputs):
  image, _, _ = inputs
  rng = np.random.default_rng(3)
  masks = (rng.uniform(0, 1, (4, 12, 10)) > 0.5).astype(np.float32)
  weights = np.asarray(temporal.long_term_weights(masks))
  np.testing.assert_array_equal(weights, loop_long_term_weights(masks))
  assert (weights.sum(0) == masks.max(0)).all()  # once if reliable in any earlier frame, else never
  warped = rng.uniform(0, 1, (4, *image.shape)).astype(np.float32)
  value = temporal.long_term_temporal_loss(image=image, warped_previous=warped, reliability=masks)
  expected = sum(numpy_temporal(image, warped[j], weights[j]) for j in range(4))
  np.testing.assert_allclose(float(value), expected, rtol=1e-6)
