"""Backward warping: an image sampled along a flow, bilinear or bicubic, jit-compiled.

  warp(I, f)[p] = I(p + f[p])      (x, y) = p + (dx, dy), bilinear between the four nearest pixels
  warp_cubic(I, f)[p]               the same point, Keys's cubic convolution (a = -0.5, Catmull-Rom) over 4x4 pixels

Bilinear sampling at a fractional position is a low-pass filter (at a half-pixel shift it keeps cos(w/2) of a
frequency w: 0.71 of a 4-pixel period), so a texture warped frame after frame blurs; the cubic kernel keeps 0.88 of
it and reproduces quadratics exactly. Lai et al.'s warping error is defined with the bilinear `warp`; the
consistency pass moves its previous output with `warp_cubic`.

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


def _keys(t: jax.Array) -> jax.Array:
  """Keys's cubic convolution kernel with a = -0.5 at distances t (it is 0 from |t| = 2 on)."""
  t = jnp.abs(t)
  near = (1.5 * t - 2.5) * t * t + 1.0
  far = ((-0.5 * t + 2.5) * t - 4.0) * t + 2.0
  return jnp.where(t <= 1.0, near, jnp.where(t < 2.0, far, 0.0))


@jax.jit
def warp_cubic(image: jax.Array, flow: jax.Array) -> jax.Array:
  """`image` [H, W, C] sampled at p + `flow`[p] by cubic convolution (Keys 1981, a = -0.5), border as `warp`.

  Each output pixel is sum_{i,j in -1..2} k(y - y0 - j) k(x - x0 - i) image[y0 + j, x0 + i] with (x0, y0) the
  floor of the clamped sample position and rows/columns outside the image repeated from its edge. Integer shifts
  are exact; values may overshoot the image's range by a few percent near sharp edges.

  Args:
    image: [H, W, C] float.
    flow: [H, W, 2] (dx, dy) in pixels, on the grid of the result.

  Returns:
    [H, W, C] float32.
  """
  image = jnp.asarray(image, jnp.float32)
  h, w = image.shape[:2]
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
  x = jnp.clip(xs + flow[..., 0], 0.0, w - 1.0)
  y = jnp.clip(ys + flow[..., 1], 0.0, h - 1.0)
  x0, y0 = jnp.floor(x), jnp.floor(y)
  out = jnp.zeros_like(image)
  for j in range(-1, 3):
    row = jnp.clip(y0 + j, 0, h - 1).astype(jnp.int32)
    weight_y = _keys(y - (y0 + j))[..., None]
    for i in range(-1, 3):
      col = jnp.clip(x0 + i, 0, w - 1).astype(jnp.int32)
      out = out + weight_y * _keys(x - (x0 + i))[..., None] * image[row, col]
  return out


def warp_clip(frames: jax.Array, flows: jax.Array) -> jax.Array:
  """`warp` of each frame [T, H, W, C] along its flow [T, H, W, 2]: with `backward` flows, frames[:-1] moved
  into frames[1:]."""
  return jax.vmap(warp)(frames, flows)
