"""The paper's post-processing: a per-pixel affine colour map content -> output fitted in local windows, its
coefficients joint-bilaterally filtered with the content as guide (`smooth_local_affine`), and a guided filter
(`guided_filter`)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def window_counts(height: int, width: int, radius: int) -> np.ndarray:
  """(H, W) number of in-image pixels in the (2r+1)² window around each pixel: rows in range times columns in
  range, exact integers."""
  def in_range(n: int) -> np.ndarray:
    i = np.arange(n)
    return np.minimum(i + radius, n - 1) - np.maximum(i - radius, 0) + 1
  return np.outer(in_range(height), in_range(width)).astype(np.float32)


def _box_mean(x: jax.Array, radius: int) -> jax.Array:
  """Mean over the in-image part of the (2r+1)² window around each pixel of (H, W, ...)."""
  size = 2 * radius + 1
  pads = ((radius, radius), (radius, radius)) + ((0, 0),) * (x.ndim - 2)
  dims = (size, size) + (1,) * (x.ndim - 2)
  total = jax.lax.reduce_window(x, jnp.zeros((), x.dtype), jax.lax.add, dims, (1,) * x.ndim, pads)
  # The count depends on the shape alone: computed in NumPy it is a trace-time constant. As a window sum of ones
  # inside jit, XLA constant-folded it at every compilation (seconds at radius 8, with a slow-operation alarm).
  count = window_counts(x.shape[0], x.shape[1], radius)
  return total / jnp.asarray(count.reshape(count.shape + (1,) * (x.ndim - 2)), x.dtype)


@functools.partial(jax.jit, static_argnames=("radius",))
def local_affine(*, output: jax.Array, content: jax.Array, eps: float = 1e-3,
                 radius: int = 1) -> tuple[jax.Array, jax.Array]:
  """Per-pixel affine colour maps output ≈ A_k content + b_k fitted by ridge regression over the window around
  each pixel k (3x3 for radius 1): A_k = cov_k(O, I) (Σ_k + eps/|w| · 1)⁻¹, b_k = Ō_k − A_k μ_k, i.e. the
  minimiser of sum_j |A I_j + b − O_j|² + eps |A|² over the window (in-image pixels only at the border).
  Returns A (H, W, 3, 3) and b (H, W, 3)."""
  output = jnp.asarray(output, jnp.float32)
  content = jnp.asarray(content, jnp.float32)
  n = float((2 * radius + 1) ** 2)
  mu = _box_mean(content, radius)
  mean_out = _box_mean(output, radius)
  sigma = _box_mean(content[..., :, None] * content[..., None, :], radius) - mu[..., :, None] * mu[..., None, :]
  cov = _box_mean(output[..., :, None] * content[..., None, :], radius) - mean_out[..., :, None] * mu[..., None, :]
  # eps/n against a covariance (a mean over the window) is eps against the window's sum of squares.
  a = jnp.linalg.solve(sigma + eps / n * jnp.eye(3), jnp.swapaxes(cov, -1, -2))  # (Σ + ε)⁻¹ covᵀ, Σ symmetric
  a = jnp.swapaxes(a, -1, -2)
  b = mean_out - jnp.einsum("hwij,hwj->hwi", a, mu)
  return a, b


@jax.jit
def _joint_bilateral(values: jax.Array, guide: jax.Array, spatial: jax.Array, sigma_r: float) -> jax.Array:
  """Normalised joint bilateral filter of (H, W, K) values with an (H, W, 3) guide and a (2r+1)² spatial kernel;
  taps outside the image are skipped (weight 0)."""
  size = spatial.shape[0]
  r = size // 2
  h, w = values.shape[:2]
  pad = ((r, r), (r, r), (0, 0))
  vals = jnp.pad(values, pad)
  gd = jnp.pad(guide, pad)
  inside = jnp.pad(jnp.ones((h, w), values.dtype), r)

  def body(t, carry):
    acc, norm = carry
    dy, dx = t // size, t % size
    v = jax.lax.dynamic_slice(vals, (dy, dx, 0), (h, w, values.shape[2]))
    g = jax.lax.dynamic_slice(gd, (dy, dx, 0), (h, w, 3))
    m = jax.lax.dynamic_slice(inside, (dy, dx), (h, w))
    weight = spatial[dy, dx] * m * jnp.exp(-jnp.sum(jnp.square(g - guide), -1) / (2 * sigma_r**2))
    return acc + weight[..., None] * v, norm + weight

  acc, norm = jax.lax.fori_loop(0, size * size, body, (jnp.zeros_like(values), jnp.zeros((h, w), values.dtype)))
  return acc / norm[..., None]  # the centre tap has weight 1, so norm >= 1


def smooth_local_affine(*, output: np.ndarray, content: np.ndarray, eps: float = 1e-3, radius: int = 15,
                        sigma_s: float = 5.0, sigma_r: float = 0.01) -> np.ndarray:
  """Luan et al.'s final post-processing: 3x3-window affine maps content -> output (`local_affine`, ridge `eps`),
  joint-bilaterally filtered (content as guide, window radius `radius`, Gaussian σ_s pixels in space and σ_r in
  RGB), applied to the content. An output that is an affine colour transform of the content is reproduced."""
  offsets = np.arange(-radius, radius + 1)
  spatial = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma_s**2)).astype(np.float32)
  return np.asarray(_smooth_affine(jnp.asarray(output, jnp.float32), jnp.asarray(content, jnp.float32),
                                   jnp.asarray(spatial), eps, float(sigma_r)), np.float32)


@jax.jit
def _smooth_affine(output: jax.Array, content: jax.Array, spatial: jax.Array, eps: float,
                   sigma_r: float) -> jax.Array:
  a, b = local_affine(output=output, content=content, eps=eps)
  h, w = content.shape[:2]
  coefficients = jnp.concatenate([a.reshape(h, w, 9), b], axis=-1)
  smooth = _joint_bilateral(coefficients, content, spatial, sigma_r)
  a, b = smooth[..., :9].reshape(h, w, 3, 3), smooth[..., 9:]
  return jnp.einsum("hwij,hwj->hwi", a, content) + b


def guided_filter(*, guide: np.ndarray, source: np.ndarray, radius: int = 8, eps: float = 0.01) -> np.ndarray:
  """He et al.'s colour-guided filter of an (H, W, 3) source: per-window ridge affine maps guide -> source
  (regulariser eps against the window covariance), averaged over the windows covering each pixel."""
  return np.asarray(_guided_filter(jnp.asarray(guide, jnp.float32), jnp.asarray(source, jnp.float32), eps,
                                   radius=radius), np.float32)


@functools.partial(jax.jit, static_argnames=("radius",))
def _guided_filter(guide: jax.Array, source: jax.Array, eps: float, *, radius: int) -> jax.Array:
  n = float((2 * radius + 1) ** 2)
  a, b = local_affine(output=source, content=guide, eps=eps * n, radius=radius)
  a, b = _box_mean(a, radius), _box_mean(b, radius)
  return jnp.einsum("hwij,hwj->hwi", a, guide) + b
