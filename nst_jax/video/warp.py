"""Backward warping: an image sampled along a flow, bilinear, jit-compiled.

  warp(I, f)[p] = I(p + f[p])      (x, y) = p + (dx, dy), bilinear between the four nearest pixels

Border: sample positions outside the image are clamped to its edge (the edge pixels repeat, like
scipy.ndimage.map_coordinates(order=1, mode="nearest")). The pixels whose flow leaves the frame are exactly the
ones `reliability` marks 0, so what they get matters only as a starting guess, and a repeated edge is a better
guess than black.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.jit
def warp(image: jax.Array, flow: jax.Array) -> jax.Array:
  """`image` [H, W, C] sampled at p + `flow`[p] for every pixel p.

  Args:
    image: [H, W, C] float.
    flow: [H, W, 2] (dx, dy) in pixels, on the grid of the result (see the package docstring: frame t moves into
      frame t+1 along backward[t]).

  Returns:
    [H, W, C] float32, differentiable in `image` and `flow`.
  """
  image = jnp.asarray(image, jnp.float32)
  h, w = image.shape[:2]
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
  x = jnp.clip(xs + flow[..., 0], 0.0, w - 1.0)
  y = jnp.clip(ys + flow[..., 1], 0.0, h - 1.0)
  # The left/top neighbour stops one short of the edge so that its partner is inside; at the edge the weight
  # moves wholly onto the partner.
  x0 = jnp.clip(jnp.floor(x), 0, max(w - 2, 0)).astype(jnp.int32)
  y0 = jnp.clip(jnp.floor(y), 0, max(h - 2, 0)).astype(jnp.int32)
  x1, y1 = jnp.minimum(x0 + 1, w - 1), jnp.minimum(y0 + 1, h - 1)
  fx, fy = (x - x0)[..., None], (y - y0)[..., None]
  top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
  bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
  return top * (1 - fy) + bottom * fy


def warp_clip(frames: jax.Array, flows: jax.Array) -> jax.Array:
  """`warp` of each frame [T, H, W, C] along its flow [T, H, W, 2]: with `backward` flows, frames[:-1] moved
  into frames[1:]."""
  return jax.vmap(warp)(frames, flows)
