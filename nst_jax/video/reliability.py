"""Where a flow can be trusted: Ruder et al. 2016, §3.2 (after Sundaram et al. 2010).

Warping frame a into frame b uses the flow w^ = flow b -> a, on frame b's grid (package docstring: backward[t] for
a = t, b = t+1). Its reliability c in frame b is 0 at three kinds of pixel and 1 elsewhere:

  out of frame    p + w^(p) is outside frame a (the strip a camera pan uncovers)
  disocclusion    |w~ + w^|^2 > 0.01 (|w~|^2 + |w^|^2) + 0.5,   w~(p) = w(p + w^(p))
                  where w = flow a -> b (on frame a's grid) is sampled where w^ points: going b -> a -> b
                  should come back to p, and where it does not, the pixel was hidden in frame a.
  motion boundary |grad w^_x|^2 + |grad w^_y|^2 > 0.01 |w^|^2 + 0.002
                  (central differences; flow is unreliable where it changes abruptly).

These are the paper's inequalities with its naming (w^ the flow that warps, w the other direction), and the roles
its consistencyChecker gives the two flows. Unlike that program, a position on the last row or column counts as
inside (it marks them unreliable even for zero flow), and the mask is not blurred: the paper defines c as 0 or 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nst_jax.video.warp import warp

CONSISTENCY_RELATIVE, CONSISTENCY_ABSOLUTE = 0.01, 0.5  # px^2
BOUNDARY_RELATIVE, BOUNDARY_ABSOLUTE = 0.01, 0.002


def central_gradient(field: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(d/dx, d/dy) of [H, W, ...] by central differences (f[i+1] - f[i-1]) / 2, edges repeated."""
  padded = jnp.pad(field, [(1, 1), (1, 1)] + [(0, 0)] * (field.ndim - 2), mode="edge")
  return (padded[1:-1, 2:] - padded[1:-1, :-2]) / 2, (padded[2:, 1:-1] - padded[:-2, 1:-1]) / 2


def out_of_frame(flow: jax.Array) -> jax.Array:
  """[H, W] bool: p + flow(p) outside the pixel centres [0, W-1] x [0, H-1]."""
  h, w = flow.shape[:2]
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
  x, y = xs + flow[..., 0], ys + flow[..., 1]
  return (x < 0) | (x > w - 1) | (y < 0) | (y > h - 1)


def disoccluded(flow: jax.Array, reverse_flow: jax.Array) -> jax.Array:
  """[H, W] bool: the forward-backward check fails (see the module docstring; `flow` is w^, `reverse_flow` w)."""
  round_trip = warp(reverse_flow, flow)
  squared = lambda v: jnp.sum(jnp.square(v), axis=-1)
  return squared(round_trip + flow) > (CONSISTENCY_RELATIVE * (squared(round_trip) + squared(flow))
                                       + CONSISTENCY_ABSOLUTE)


def motion_boundaries(flow: jax.Array) -> jax.Array:
  """[H, W] bool: |grad flow_x|^2 + |grad flow_y|^2 > 0.01 |flow|^2 + 0.002."""
  gx, gy = central_gradient(flow)
  variation = jnp.sum(jnp.square(gx) + jnp.square(gy), axis=-1)
  return variation > BOUNDARY_RELATIVE * jnp.sum(jnp.square(flow), axis=-1) + BOUNDARY_ABSOLUTE


@jax.jit
def reliability(flow: jax.Array, reverse_flow: jax.Array) -> jax.Array:
  """Ruder et al.'s weights c for warping frame a into frame b.

  Args:
    flow: [H, W, 2] flow b -> a on frame b's grid (the flow that warps, w^).
    reverse_flow: [H, W, 2] flow a -> b on frame a's grid (w).

  Returns:
    [H, W] float32: 0 out of frame, at disocclusions and at motion boundaries; 1 elsewhere.
  """
  flow, reverse_flow = jnp.asarray(flow, jnp.float32), jnp.asarray(reverse_flow, jnp.float32)
  bad = out_of_frame(flow) | disoccluded(flow, reverse_flow) | motion_boundaries(flow)
  return jnp.where(bad, 0.0, 1.0).astype(jnp.float32)


def clip_reliability(forward: jax.Array, backward: jax.Array) -> jax.Array:
  """[T-1, H, W]: masks[t] = reliability(backward[t], forward[t]), the weights in frame t+1 of frame t warped
  into it."""
  return jax.vmap(reliability)(backward, forward)
