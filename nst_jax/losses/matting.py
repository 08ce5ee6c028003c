"""The matting Laplacian of Levin et al. (2008), applied matrix-free: the photorealism loss of Luan et al. (2017).

Levin et al.'s Laplacian of a guide image I (H, W, 3) with 3x3 windows w_k (only windows fully inside the image),
|w| = 9 pixels, window mean μ_k and covariance Σ_k, is

  L_ij = sum_{k: i, j in w_k} ( δ_ij − (1 + (I_i − μ_k)ᵀ (Σ_k + ε/9 · I)⁻¹ (I_j − μ_k)) / 9 ).

It is never built. He et al.'s guided-filter form applies it with 3x3 box sums `box` (zero outside the image):
with Δ_k⁻¹ = (Σ_k + ε/9 · I)⁻¹, window indicator m_k and window count c_i = box(m)_i,

  a_k = m_k · Δ_k⁻¹ (box(I p)_k / 9 − μ_k box(p)_k / 9),     b_k = m_k · (box(p)_k / 9 − a_kᵀ μ_k),
  (L p)_i = c_i p_i − (I_iᵀ box(a)_i + box(b)_i).

The photorealism energy of an image p (H, W, 3) in [0, 1] is sum_c p_cᵀ L p_c, the quantity Luan et al. weight by
λ; its gradient (2 L p) comes from `jax.grad`.

Precision. In flat regions Σ_k ≈ 0 and Δ_k⁻¹ ≈ 9/ε; computing μ, Σ and the inverse in float32 gives NaN or garbage
there, so every per-guide quantity is computed once in float64 with NumPy and cast. In float32 the guided-filter
form still cancels: box(I p)/9 − μ_k box(p)/9 is ~σ_k·|p| from terms of size |p|, and Δ_k⁻¹ ~ 1/σ_k² amplifies the
rounding. `apply_laplacian` therefore uses the same algebra grouped so that nothing cancels: with the per-window
whitened, centred guide (precomputed in float64, 27 numbers per pixel)

  Y_{k,o} = Δ_k^{-1/2} (I_{k+o} − μ_k) / 3   (o one of the 9 offsets of the window; |Y| <= 1 since Σ_o Y Yᵀ <= I),

the window's block of L is 1 − 11ᵀ/9 − Y Yᵀ, so with z_k = Σ_o Y_{k,o} p_{k+o} and p̄_k = box(p)_k / 9,

  (L p)_i = sum_o m_{i−o} (p_i − p̄_{i−o} − Y_{i−o,o}ᵀ z_{i−o}),

the guided-filter form with a_k = Δ_k^{-1/2} z_k / 3 and b_k = p̄_k − a_kᵀ μ_k, the colour products taken relative
to the window mean before summing. `apply_laplacian_guided_filter` keeps the literal form for comparison (exact in
float64; the accuracy of both is in docs/photoreal.md).

Locality (for tiled evaluation). (L p)_i depends only on p and the precomputed fields within 2 pixels of i, and the
energy is a sum of per-pixel terms p_i·(L p)_i (`matting_energy_map`). A tile evaluated with a 2-pixel halo of p
and of the precomputed fields therefore gives exact (L p)_i on its interior, as long as the fields were
precomputed on the whole image (m_k and c_i encode the true image border, not the tile's).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

EPSILON = 1e-7  # Luan et al.'s (and Levin et al.'s) regulariser
WINDOW = 9      # pixels in a 3x3 window

Laplacian = Mapping[str, jax.Array]  # the fields of `precompute`


def _box_np(x: np.ndarray) -> np.ndarray:
  """3x3 window sums over the first two axes, zero outside the image (NumPy, any trailing axes)."""
  h, w = x.shape[:2]
  padded = np.pad(x, ((1, 1), (1, 1)) + ((0, 0),) * (x.ndim - 2))
  return sum(padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))


OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def _window_stats(guide: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """float64 window indicator m_k (H, W), mean μ_k (H, W, 3) and Δ_k = Σ_k + ε/9 I (H, W, 3, 3); Δ_k is the
  identity for windows not fully inside the image (any invertible matrix would do: m_k zeroes them)."""
  guide = np.asarray(guide, np.float64)
  if guide.ndim != 3 or guide.shape[2] != 3:
    raise ValueError(f"the matting guide must be an (H, W, 3) image, got shape {guide.shape}")
  h, w, _ = guide.shape
  window = np.zeros((h, w))
  window[1:-1, 1:-1] = 1.0
  mean = _box_np(guide) / WINDOW
  second = _box_np(guide[..., :, None] * guide[..., None, :]) / WINDOW
  cov = second - mean[..., :, None] * mean[..., None, :]
  delta = np.where(window[..., None, None] > 0, cov + eps / WINDOW * np.eye(3), np.eye(3))
  return window, mean, delta


def precompute(guide: np.ndarray, *, eps: float = EPSILON, dtype=jnp.float32) -> dict[str, jax.Array]:
  """The per-guide fields of `apply_laplacian`, computed in float64 and cast to `dtype`.

  'whitened' Y (H, W, 9, 3), zero for windows not fully inside; 'window' m_k (H, W); 'count' c_i (H, W). Window k
  is centred at pixel k. (Centring uses float64 window means: the window's colour statistics are only ever used
  relative to them.)"""
  guide = np.asarray(guide, np.float64)
  window, mean, delta = _window_stats(guide, eps)
  h, w, _ = guide.shape
  values, vectors = np.linalg.eigh(delta)
  inverse_sqrt = np.einsum("hwij,hwj,hwkj->hwik", vectors, 1.0 / np.sqrt(values), vectors)
  padded = np.pad(guide, ((1, 1), (1, 1), (0, 0)))
  centred = np.stack([padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] - mean for dy, dx in OFFSETS], axis=2)
  # (Batched matmul: the same sum as einsum "hwij,hwoj->hwoi", 3x faster in NumPy.)
  whitened = np.matmul(centred, np.swapaxes(inverse_sqrt, -1, -2)) / 3.0 * window[..., None, None]
  return {"whitened": jnp.asarray(whitened, dtype), "window": jnp.asarray(window, dtype),
          "count": jnp.asarray(_box_np(window), dtype)}


def _shift(x: jax.Array, dy: int, dx: int) -> jax.Array:
  """x[i + dy, j + dx] over (H, W, ...), zero outside the image."""
  h, w = x.shape[:2]
  padded = jnp.pad(x, ((1, 1), (1, 1)) + ((0, 0),) * (x.ndim - 2))
  return padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]


def apply_laplacian(p: jax.Array, laplacian: Laplacian) -> jax.Array:
  """L p for p of shape (H, W) or (H, W, C) (each channel separately), in p's dtype."""
  flat = p.ndim == 2
  if flat:
    p = p[..., None]
  whitened, window = laplacian["whitened"].astype(p.dtype), laplacian["window"].astype(p.dtype)
  if p.shape[:2] != whitened.shape[:2]:
    raise ValueError(f"image of shape {p.shape[:2]} does not match the Laplacian's guide {whitened.shape[:2]}")
  taps = [_shift(p, dy, dx) for dy, dx in OFFSETS]                                   # p_{k+o}, each (H, W, C)
  p_mean = sum(taps) / WINDOW                                                         # p̄_k
  z = sum(jnp.einsum("hwi,hwc->hwci", whitened[:, :, o], tap) for o, tap in enumerate(taps))  # (H, W, C, 3)
  out = jnp.zeros_like(p)
  for o, (dy, dx) in enumerate(OFFSETS):
    residual = window[..., None] * (taps[o] - p_mean - jnp.einsum("hwi,hwci->hwc", whitened[:, :, o], z))
    out = out + _shift(residual, -dy, -dx)  # window k = i − o contributes to pixel i = k + o
  return out[..., 0] if flat else out


def precompute_guided_filter(guide: np.ndarray, *, eps: float = EPSILON, dtype=jnp.float32) -> dict[str, jax.Array]:
  """The fields of the literal guided-filter form (`apply_laplacian_guided_filter`), float64 then cast.

  'guide' I, 'mean' μ_k, 'inverse' m_k Δ_k⁻¹, 'window' m_k, 'count' c_i."""
  window, mean, delta = _window_stats(guide, eps)
  inverse = np.linalg.inv(delta) * window[..., None, None]
  return {"guide": jnp.asarray(guide, dtype), "mean": jnp.asarray(mean, dtype), "inverse": jnp.asarray(inverse, dtype),
          "window": jnp.asarray(window, dtype), "count": jnp.asarray(_box_np(window), dtype)}


def _box(x: jax.Array) -> jax.Array:
  """3x3 window sums over axes 0 and 1 of (H, W, ...), zero outside the image."""
  pads = ((1, 1), (1, 1)) + ((0, 0),) * (x.ndim - 2)
  window = (3, 3) + (1,) * (x.ndim - 2)
  return jax.lax.reduce_window(x, jnp.zeros((), x.dtype), jax.lax.add, window, (1,) * x.ndim, pads)


def apply_laplacian_guided_filter(p: jax.Array, laplacian: Laplacian) -> jax.Array:
  """L p of (H, W, C) p in He et al.'s box-filter form (the module docstring's a_k, b_k).

  Exact in float64; in float32 it loses digits on photos (the module docstring), so the optimisation uses
  `apply_laplacian`."""
  guide, mean, inverse = laplacian["guide"], laplacian["mean"], laplacian["inverse"]
  window, count = laplacian["window"], laplacian["count"]
  p_mean = _box(p) / WINDOW                                                   # (H, W, C)
  guide_p = _box(guide[:, :, None, :] * p[..., None]) / WINDOW                # (H, W, C, 3)
  cov = guide_p - mean[:, :, None, :] * p_mean[..., None]                     # (H, W, C, 3)
  a = jnp.einsum("hwij,hwcj->hwci", inverse, cov)                             # zero outside: inverse is masked
  b = window[..., None] * (p_mean - jnp.einsum("hwci,hwi->hwc", a, mean))     # (H, W, C)
  return count[..., None] * p - (jnp.einsum("hwi,hwci->hwc", guide, _box(a)) + _box(b))


def matting_energy_map(*, image: jax.Array, laplacian: Laplacian) -> jax.Array:
  """The per-pixel terms sum_c p_c,i (L p_c)_i (H, W) of the energy; local (2-pixel support), so tiles can crop it."""
  return jnp.sum(image * apply_laplacian(image, laplacian), axis=-1)


def matting_energy(*, image: jax.Array, laplacian: Laplacian) -> jax.Array:
  """Matting energy sum_c p_cᵀ L p_c of an (H, W, 3) image (or (H, W, C), any C) in [0, 1]; >= 0 up to rounding."""
  return jnp.sum(matting_energy_map(image=image, laplacian=laplacian))
