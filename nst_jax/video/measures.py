"""How stable a clip is: the temporal warping error of Lai et al. 2018.

  E_warp = 1/(T-1) sum_{t=1}^{T-1} E_t,
  E_t    = sum_p M_t,p |O_t,p - O^_{t-1},p|^2 / (3 sum_p M_t,p),      O^_{t-1} = warp(O_{t-1}, backward[t-1])

on [0, 1] RGB: the mean, over the pixels M_t marks reliable and the three channels, of the squared difference
between output frame t and output frame t-1 warped into frame t along the flow t -> t-1 (package convention).
Lai et al.'s script warps frame t into t-1 with the forward flow instead (the same measure on the other frame's
grid); dividing by the masked pixels times channels is what its 3-channel masks do. A pair whose mask is empty is
averaged over all pixels, as there. Flows and masks are usually those of the original (unstylised) clip.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.video.warp import warp


@jax.jit
def pair_warping_error(frame: jax.Array, previous: jax.Array, flow: jax.Array, mask: jax.Array) -> jax.Array:
  """E_t for one pair: `frame` O_t, `previous` O_{t-1} [H, W, 3], `flow` t -> t-1 [H, W, 2], `mask` [H, W]."""
  frame, mask = jnp.asarray(frame, jnp.float32), jnp.asarray(mask, jnp.float32)
  squared = jnp.square(frame - warp(previous, flow))
  count = jnp.sum(mask) * frame.shape[-1]
  masked = jnp.sum(squared * mask[..., None]) / jnp.maximum(count, 1e-12)
  return jnp.where(count > 0, masked, jnp.mean(squared))


def warping_errors(frames: np.ndarray, backward: np.ndarray, masks: np.ndarray) -> np.ndarray:
  """[T-1] float64: E_t for t = 1 .. T-1 (see the module docstring)."""
  return np.array([float(pair_warping_error(frames[t], frames[t - 1], backward[t - 1], masks[t - 1]))
                   for t in range(1, len(frames))])


def warping_error(frames: np.ndarray, backward: np.ndarray, masks: np.ndarray) -> float:
  """E_warp of a clip [T, H, W, 3] in [0, 1] with flows t+1 -> t `backward` [T-1, H, W, 2] and reliability
  `masks` [T-1, H, W]; 0 for a one-frame clip (nothing to compare)."""
  errors = warping_errors(frames, backward, masks)
  return float(errors.mean()) if errors.size else 0.0
