"""Temporal losses of Ruder et al. 2016 (§3.2, §3.3): a frame's distance to earlier outputs moved into it along the
flow, where the flow is reliable.

  short term   L_temporal(x, w, c) = 1/D sum_k c_k (x_k - w_k)^2,    D = H W C
               x the frame being optimised, w = warp(previous output, flow) and c the reliability of that warp
               (0 or 1 per pixel, the same for every channel): the mean over pixels and channels.
  long term    L_long(x) = sum_{j in J} L_temporal(x, w_j, c_long_j)
               over earlier frames i - j, j in J (e.g. {1, 10, 20, 40}), nearest first, with
               c_long_j = max(c_j - sum_{l in J, l < j} c_l, 0): a pixel counts once, towards the nearest earlier
               frame in which it is reliable.

Pure, keyword-only, differentiable in the image; warping and masks are computed once per frame (nst_jax.video).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def temporal_loss(*, image: jax.Array, warped_previous: jax.Array, reliability: jax.Array) -> jax.Array:
  """mean over pixels and channels of c (x - w)^2.

  Args:
    image: [..., H, W, C] the frame x.
    warped_previous: [..., H, W, C] the previous output warped into this frame, w.
    reliability: [..., H, W] weights c in [0, 1].

  Returns:
    Scalar float32.
  """
  c = jnp.asarray(reliability, jnp.float32)[..., None]
  return jnp.mean(c * jnp.square(image.astype(jnp.float32) - warped_previous))


def long_term_weights(reliabilities: jax.Array) -> jax.Array:
  """[J, H, W] c_long from [J, H, W] masks c_j of the earlier frames, nearest first:
  c_long_j = max(c_j - sum_{l < j} c_l, 0)."""
  reliabilities = jnp.asarray(reliabilities, jnp.float32)
  nearer = jnp.cumsum(reliabilities, axis=0) - reliabilities
  return jnp.maximum(reliabilities - nearer, 0.0)


def long_term_temporal_loss(*, image: jax.Array, warped_previous: jax.Array,
                            reliability: jax.Array) -> jax.Array:
  """sum over j of temporal_loss(image, warped_previous[j], long_term_weights(reliability)[j]).

  Args:
    image: [H, W, C] the frame x.
    warped_previous: [J, H, W, C] the outputs of frames i - j (nearest first), each warped into this frame.
    reliability: [J, H, W] their masks c_j (`reliability` of the flow between frame i and frame i - j).

  Returns:
    Scalar float32.
  """
  weights = long_term_weights(reliability)
  return jnp.sum(jax.vmap(lambda w, c: temporal_loss(image=image, warped_previous=w, reliability=c))(
      warped_previous, weights))
