"""Closed-form photorealistic smoothing (Li et al. 2018, "A Closed-form Solution to Photorealistic Image
Stylization", section 3.2), solved matrix-free by conjugate gradients on the matting Laplacian.

Given the stylised image Y and the content photo I, the smoothed result is

  R* = argmin_R  sum_ij W_ij || R_i / sqrt(d_i) − R_j / sqrt(d_j) ||² + λ || R − Y ||²
     = (1 − α) (I − α S)⁻¹ Y,     S = D^(-1/2) W D^(-1/2),  α = 1 / (1 + λ),

with W the matting affinity of I (Levin et al.: W_ij = sum over the 3x3 windows k holding i and j of
(1 + (I_i − μ_k)ᵀ (Σ_k + ε/9)⁻¹ (I_j − μ_k)) / 9) and D its row sums. Each window adds 1 to the row sum of every
pixel in it, so D = C, the number of windows holding each pixel (`matting.precompute`'s 'count'), and W = C − L with
L the matting Laplacian (`nst_jax.losses.matting`). Hence I − αS = α (λ I + C^(-1/2) L C^(-1/2)), and R* solves

  (λ I + C^(-1/2) L C^(-1/2)) R = λ Y,

a symmetric positive definite system (L is positive semi-definite) whose operator is `matting.apply_laplacian`, so
no N x N matrix is built.

Degree normalisation. L 1 = 0, so the normalised system's near-null vector is C^(1/2) 1, not 1: a flat Y comes back
multiplied by sqrt(c_i / 9) relative to the interior, a frame two pixels wide darkened by up to 67% at the corners
(c = 1) and 42% along the edges (c = 3). In the interior C = 9 I, so `degree_normalized=False` (the default) solves
(λ I + L / 9) R = λ Y: the paper's system wherever every window fits, and one that keeps constants at the border
too. `degree_normalized=True` solves the paper's system as written.

Large images (`smooth_in_tiles`): the operator couples pixels only through 3x3 windows and the solution differs
from Y by what the affinity ties together, so each overlapping tile is solved with its own content's affinity and
the solutions are blended with linear ramps; the tiles disagree only near their borders, inside the ramps.

Conjugate gradients start from Y: R* differs from Y mostly in the components that the affinity couples strongly
(the operator's large eigenvalues), which converge first; the slow components are the smooth ones, where R* ≈ Y.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.losses import matting
from nst_jax.methods import blend_tiles

LAMBDA = 1e-4    # Li et al.'s λ (their α = 1 / (1 + λ) ≈ 0.9999)
EPSILON = 1e-7   # ε of the matting affinity, as in Levin et al. and Li et al.
RTOL = 1e-2      # stop at ||Y − A R|| <= RTOL ||Y|| (a bound on the RMS error relative to Y: on a 512x320 photo the
                 # error against a 1e-4 solve was 0.04 / 255 on average, 0.7 / 255 at most, in 197 iterations)
MAX_ITERATIONS = 1000
RESTARTS = 2     # conjugate gradients restarted from the best iterate when it stopped short of RTOL


@dataclasses.dataclass(frozen=True)
class SmoothingResult:
  """The smoothed image and how the solve ended.

  Attributes:
    image: (H, W, 3) float32, not clipped.
    iterations: conjugate-gradient iterations run (the image is the iterate with the smallest residual).
    residual: the final ||Y − (I + C^(-1/2) L C^(-1/2) / λ) R|| / ||Y||, an upper bound of ||R − R*|| / ||Y||
      (the operator's eigenvalues are >= 1).
  """

  image: np.ndarray
  iterations: int
  residual: float


def _operator(x: jax.Array, laplacian: matting.Laplacian, scale: jax.Array, lam: jax.Array) -> jax.Array:
  """(I + G L G / λ) x for (H, W, C) x, G = diag(`scale`): the system divided by λ, so that its numbers are of the
  image's size (the residual of Y itself), not λ times smaller."""
  return x + scale * matting.apply_laplacian(scale * x, laplacian) / lam


def _deflated(x: jax.Array, unit: jax.Array) -> jax.Array:
  """x without its component along the unit null vector `unit` (H, W, 1), per channel."""
  return x - unit * jnp.sum(unit * x, axis=(0, 1), keepdims=True)


@jax.jit
def _solve(stylized: jax.Array, start: jax.Array, laplacian: matting.Laplacian, scale: jax.Array, lam: jax.Array,
           rtol: jax.Array, max_iterations: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Conjugate gradients on the whole (H, W, 3) image at once (the channels share the operator; one step size for
  all three is CG on the block-diagonal system), from `start`.

  L 1 = 0, so u = G⁻¹ 1 is an eigenvector of the operator with eigenvalue λ and R's component along u is Y's.
  In float32, L 1 comes out as rounding noise of ~1e-7, which CG divides by λ: an offset of ~1e-4 along u. That
  component is therefore taken from Y exactly and CG runs on the complement (the residual and the search direction
  re-projected each step)."""
  unit = jnp.broadcast_to(1.0 / scale, stylized.shape[:2] + (1,))
  unit = unit / jnp.sqrt(jnp.sum(unit * unit))
  along = stylized - _deflated(stylized, unit)
  b = stylized - along
  b_norm = jnp.sqrt(jnp.sum(b * b))
  x = _deflated(start, unit)
  r = _deflated(b - _operator(x, laplacian, scale, lam), unit)
  rs = jnp.sum(r * r)

  def cond(state):
    _, _, _, rs, i, _, best_rs = state
    # Stop at the tolerance, or when the recursive residual has grown far above its best: in float32 the
    # operator is symmetric only to rounding, and once CG has reached that floor it can drift away again.
    return (jnp.sqrt(rs) > rtol * b_norm) & (i < max_iterations) & (rs < 1e4 * best_rs)

  def body(state):
    x, r, p, rs, i, best_x, best_rs = state
    ap = _deflated(_operator(p, laplacian, scale, lam), unit)
    step = rs / jnp.sum(p * ap)
    x = x + step * p
    r = r - step * ap
    rs_next = jnp.sum(r * r)
    better = rs_next < best_rs
    best_x = jnp.where(better, x, best_x)
    best_rs = jnp.where(better, rs_next, best_rs)
    return x, r, _deflated(r + (rs_next / rs) * p, unit), rs_next, i + 1, best_x, best_rs

  state = jax.lax.while_loop(cond, body, (x, r, r, rs, jnp.int32(0), x, rs))
  _, _, _, _, i, best_x, best_rs = state
  return _deflated(best_x, unit) + along, i, jnp.sqrt(best_rs) / jnp.maximum(b_norm, 1e-30)


def smooth(*, stylized: np.ndarray, content: np.ndarray, lam: float = LAMBDA, eps: float = EPSILON,
           rtol: float = RTOL, max_iterations: int = MAX_ITERATIONS,
           degree_normalized: bool = False, laplacian: matting.Laplacian | None = None) -> SmoothingResult:
  """The closed-form smoothing R* = (1 − α)(I − αS)⁻¹ Y of a stylised image with the content's matting affinity.

  Args:
    stylized: Y, (H, W, 3) float in [0, 1] (e.g. the PhotoWCT transform's decoded image), the size of `content`.
    content: the photo I whose affinity decides what stays together, (H, W, 3) float in [0, 1].
    lam: λ, the weight of staying close to Y (smaller: smoother, closer to a local affine map of the content).
    eps: ε of the matting affinity.
    rtol: relative residual at which conjugate gradients stop.
    max_iterations: at most this many iterations.
    degree_normalized: the paper's D^(-1/2) W D^(-1/2) exactly (darkens a 2-pixel frame; the module docstring),
      instead of D = 9 I, which equals it away from the border.
    laplacian: `matting.precompute(content, eps=eps)` when the caller already has it (several smoothings of one
      photo), else computed here.

  Returns:
    The `SmoothingResult` (the image float32, unclipped).

  Example:
    >>> out = smooth(stylized=wct_output, content=photo).image
  """
  stylized = np.asarray(stylized, np.float32)
  content = np.asarray(content, np.float32)
  if stylized.shape != content.shape or content.ndim != 3 or content.shape[2] != 3:
    raise ValueError(f"stylized {stylized.shape} and content {content.shape} must be (H, W, 3) of one size")
  if min(content.shape[:2]) < 3:
    raise ValueError(f"the matting affinity needs at least 3x3 pixels, got {content.shape[1]}x{content.shape[0]}")
  if not lam > 0:
    raise ValueError(f"lam must be positive, got {lam}")
  if laplacian is None:
    laplacian = matting.precompute(content, eps=eps)
  if degree_normalized:
    scale = jax.lax.rsqrt(laplacian["count"])[..., None]
  else:
    scale = jnp.full((1, 1, 1), 1.0 / 3.0, jnp.float32)
  y = jnp.asarray(stylized)
  x, iterations, residual = _solve(y, y, laplacian, scale, jnp.float32(lam), jnp.float32(rtol),
                                   jnp.int32(max_iterations))
  total = int(iterations)
  # In float32 the recursive residual drifts from the true one on stiff systems (small λ), and CG stops at its best
  # iterate short of `rtol`; restarting from there with the true residual gains about a digit.
  for _ in range(RESTARTS):
    if float(residual) <= rtol or total >= max_iterations:
      break
    x, iterations, residual = _solve(y, x, laplacian, scale, jnp.float32(lam), jnp.float32(rtol),
                                     jnp.int32(max_iterations - total))
    total += int(iterations)
  return SmoothingResult(np.asarray(x, np.float32), total, float(residual))


def smooth_in_tiles(*, stylized: np.ndarray, content: np.ndarray, tile: int = 1024, overlap: int = 128,
                    lam: float = LAMBDA, eps: float = EPSILON, rtol: float = RTOL,
                    max_iterations: int = MAX_ITERATIONS) -> SmoothingResult:
  """`smooth` over overlapping square tiles of at most `tile` px, blended with linear ramps over `overlap` px: the
  memory of one tile's solve, whatever the image's size (one compilation for all tiles of one shape).

  Args:
    stylized, content, lam, eps, rtol, max_iterations: as for `smooth` (the default, unnormalised system).
    tile: side of the tiles in px (tiles are cut to the image where it is smaller).
    overlap: overlap of neighbouring tiles in px, below half the tile.

  Returns:
    The `SmoothingResult`: the blended image, the most iterations and the largest residual of any tile.

  Example:
    >>> out = smooth_in_tiles(stylized=wct_output, content=photo_4k, tile=1024, overlap=128).image
  """
  stylized = np.asarray(stylized, np.float32)
  content = np.asarray(content, np.float32)
  if stylized.shape != content.shape or content.ndim != 3 or content.shape[2] != 3:
    raise ValueError(f"stylized {stylized.shape} and content {content.shape} must be (H, W, 3) of one size")
  if not 0 <= overlap < tile // 2:
    raise ValueError(f"overlap must be in [0, tile / 2), got {overlap} for tiles of {tile} px")
  h, w = content.shape[:2]
  out = np.zeros_like(stylized)
  iterations, residual = 0, 0.0
  for window, share in blend_tiles.tile_windows((h, w), (min(tile, h), min(tile, w)), overlap):
    part = smooth(stylized=stylized[window], content=content[window], lam=lam, eps=eps, rtol=rtol,
                  max_iterations=max_iterations)
    out[window] += part.image * share[..., None]
    iterations, residual = max(iterations, part.iterations), max(residual, part.residual)
  return SmoothingResult(out, iterations, residual)
