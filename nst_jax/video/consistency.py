"""Blind temporal consistency (Bonneel et al. 2015): a per-frame processed clip made stable without knowing the
process, solved in JAX frame by frame.

Output frame O_t (P_t the processed frame, W_t = warp(O_{t-1}, backward[t-1]) the previous output moved along the
flow, c_t the weights, e.g. `reliability` masks):

  O_0 = P_0,   O_t = argmin_O  sum over neighbour pairs (p, q) of |(O_p - O_q) - (P_t,p - P_t,q)|^2
                              + lam sum_p c_t,p |O_p - W_t,p|^2

i.e. keep the processed frame's gradients, stay close to the previous output where the flow is trusted. Setting
the gradient to zero gives, per channel, the screened Poisson equation

  (L + lam C) O = L P_t + lam C W_t,

with L the graph Laplacian of the pixel grid with Neumann boundaries (4 neighbours; only pairs inside the image)
and C = diag(c_t). With a spatially varying C no transform diagonalises the system, so it is solved by conjugate
gradients, matrix-free, preconditioned with its nearest constant-weight system (L + lam mean(c) I), which the
orthonormal 2-D DCT-II diagonalises exactly (L's eigenvalues there are 4 sin^2(pi k / 2H) + 4 sin^2(pi l / 2W)).
It starts from P_t. A frame whose weights are all zero keeps P_t (the system then only fixes O up to a constant).

Weights (`consistency_weights`): Ruder et al.'s reliability masks of the original clip's flow, times Bonneel et
al.'s agreement of the original frames, exp(-alpha mean_channels (I_t - warp(I_{t-1}))^2): where the flow does not
explain the original frames (a flow error the masks miss, a lighting change), the output follows the processed
frame instead of smearing the previous output into it. Any [T-1, H, W] weights work, e.g. masks alone when the
original frames are not at hand.

Defaults, measured in docs/video.md on a pan and on the shared Sintel clip with per-frame flicker and colour noise:
lam = 0.3 (0.3-1 restore a pan best; on the real clip smaller lam is closer to the clean frames), alpha = 1000
(it brings the real clip closest to the clean frames and its warping error to the clean clip's own instead of
below it), CG to a relative residual of 1e-3 (1e-4 changes the result by less than it changes the noise, at 2.6x
the iterations).

W_t is sampled by cubic convolution (`warp.warp_cubic`) by default: each frame's W_t is moved from the last output,
so bilinear sampling would low-pass a stylised texture once per frame and the steadied clip would lose style as it
goes (measured in docs/video.md).

One compiled step per clip size: `temporal_consistency` calls the same jitted step for every frame.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.video.reliability import clip_reliability
from nst_jax.video.warp import warp, warp_clip, warp_cubic

INTERPOLATIONS = ("cubic", "linear")

DEFAULT_LAMBDA = 0.3
# For stylised frames: their flicker is texture that changes place, not a brightness offset, and only a weight this
# large holds the texture where the flow is reliable (docs/video.md, the fast paths on Sintel).
STYLIZED_LAMBDA = 30.0
DEFAULT_ALPHA = 1000.0
DEFAULT_TOLERANCE = 1e-3  # relative residual |b - A x| / |b| where CG stops
DEFAULT_MAX_ITERATIONS = 200


def agreement_weights(frames: np.ndarray, backward: np.ndarray, *, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
  """[T-1, H, W] exp(-alpha mean over channels of (frames[t+1] - warp(frames[t], backward[t]))^2): 1 where the
  flow explains the original frames, towards 0 where it does not (Bonneel et al. 2015)."""
  if len(frames) < 2:
    return np.zeros((0, *np.shape(frames)[1:3]), np.float32)
  moved = warp_clip(jnp.asarray(frames[:-1], jnp.float32), jnp.asarray(backward, jnp.float32))
  difference = jnp.mean(jnp.square(jnp.asarray(frames[1:], jnp.float32) - moved), axis=-1)
  return np.asarray(jnp.exp(-alpha * difference))


def consistency_weights(frames: np.ndarray, forward: np.ndarray, backward: np.ndarray, *,
                        alpha: float = DEFAULT_ALPHA) -> np.ndarray:
  """[T-1, H, W] the default weights c_{t+1}: `clip_reliability` times `agreement_weights` of the original
  `frames` [T, H, W, 3] and their flows (package convention)."""
  masks = np.asarray(clip_reliability(jnp.asarray(forward), jnp.asarray(backward)))
  return masks * agreement_weights(frames, backward, alpha=alpha)


class SolveInfo(NamedTuple):
  iterations: jax.Array  # CG iterations run
  residual: jax.Array  # |b - A x| / |b| at the end


def neumann_laplacian(image: jax.Array) -> jax.Array:
  """L x for [H, W, C]: sum over the 4 neighbours inside the image of (x_p - x_q)."""
  dx = image[:, 1:] - image[:, :-1]
  dy = image[1:] - image[:-1]
  zero_col, zero_row = jnp.zeros_like(image[:, :1]), jnp.zeros_like(image[:1])
  return (jnp.concatenate([zero_col, dx], 1) - jnp.concatenate([dx, zero_col], 1)
          + jnp.concatenate([zero_row, dy], 0) - jnp.concatenate([dy, zero_row], 0))


def laplacian_eigenvalues(height: int, width: int) -> np.ndarray:
  """[H, W, 1] eigenvalues of `neumann_laplacian` in the orthonormal DCT-II basis."""
  ky = 4 * np.sin(np.pi * np.arange(height) / (2 * height)) ** 2
  kx = 4 * np.sin(np.pi * np.arange(width) / (2 * width)) ** 2
  return (ky[:, None] + kx[None, :])[..., None].astype(np.float32)


def screened_poisson_solve(processed: jax.Array, target: jax.Array, weights: jax.Array, *, lam: float,
                           tolerance: float = DEFAULT_TOLERANCE,
                           max_iterations: int = DEFAULT_MAX_ITERATIONS) -> tuple[jax.Array, SolveInfo]:
  """argmin_O |grad O - grad processed|^2 + lam sum_p weights_p |O_p - target_p|^2 by preconditioned CG.

  Args:
    processed: [H, W, C] the frame whose gradients to keep (P_t; also the start).
    target: [H, W, C] the values to stay close to (W_t).
    weights: [H, W] >= 0 (c_t).
    lam: the weight of the second term.
    tolerance, max_iterations: CG stops at relative residual `tolerance` or after `max_iterations`.

  Returns:
    (O [H, W, C] float32, SolveInfo).
  """
  processed, target = jnp.asarray(processed, jnp.float32), jnp.asarray(target, jnp.float32)
  c = lam * jnp.asarray(weights, jnp.float32)[..., None]
  eigen = jnp.asarray(laplacian_eigenvalues(*processed.shape[:2]))
  # The constant mode has eigenvalue 0; lam mean(c) > 0 whenever any weight is, and the floor only matters when
  # none is (then the start is already the answer).
  diagonal = eigen + jnp.maximum(jnp.mean(c), 1e-6)

  def apply(x):
    return neumann_laplacian(x) + c * x

  def precondition(r):
    spectrum = jax.scipy.fft.dctn(r, type=2, axes=(0, 1), norm="ortho")
    return jax.scipy.fft.idctn(spectrum / diagonal, type=2, axes=(0, 1), norm="ortho")

  b = neumann_laplacian(processed) + c * target
  b_norm = jnp.maximum(jnp.linalg.norm(b), 1e-30)
  x = processed
  r = b - apply(x)
  z = precondition(r)
  state = (x, r, z, z, jnp.vdot(r, z), jnp.int32(0))

  def unfinished(state):
    _, r, _, _, _, k = state
    return (jnp.linalg.norm(r) > tolerance * b_norm) & (k < max_iterations)

  def step(state):
    x, r, _, p, rz, k = state
    ap = apply(p)
    alpha = rz / jnp.vdot(p, ap)
    x, r = x + alpha * p, r - alpha * ap
    z = precondition(r)
    rz_next = jnp.vdot(r, z)
    return x, r, z, z + (rz_next / rz) * p, rz_next, k + 1

  x, r, *_, k = jax.lax.while_loop(unfinished, step, state)
  return x, SolveInfo(k, jnp.linalg.norm(r) / b_norm)


def consistency_step(processed: jax.Array, previous_output: jax.Array, flow: jax.Array, weights: jax.Array, *,
                     lam: float, tolerance: float = DEFAULT_TOLERANCE,
                     max_iterations: int = DEFAULT_MAX_ITERATIONS,
                     interpolation: str = "cubic") -> tuple[jax.Array, SolveInfo]:
  """O_t from P_t (`processed`), O_{t-1} (`previous_output`), the flow t -> t-1 on frame t's grid (`flow`,
  backward[t-1]) and c_t (`weights` [H, W]); O_{t-1} is moved by `warp_cubic` or, with `interpolation="linear"`,
  `warp`. A frame with no weight keeps P_t."""
  moved = warp_cubic(previous_output, flow) if interpolation == "cubic" else warp(previous_output, flow)
  output, info = screened_poisson_solve(processed, moved, weights, lam=lam,
                                        tolerance=tolerance, max_iterations=max_iterations)
  keep = jnp.sum(weights) <= 0
  return jnp.where(keep, jnp.asarray(processed, jnp.float32), output), info


compiled_step = jax.jit(consistency_step, static_argnames=("max_iterations", "interpolation"))


def temporal_consistency(processed: np.ndarray, backward: np.ndarray, weights: np.ndarray, *,
                         lam: float = DEFAULT_LAMBDA, tolerance: float = DEFAULT_TOLERANCE,
                         max_iterations: int = DEFAULT_MAX_ITERATIONS, interpolation: str = "cubic",
                         return_info: bool = False) -> np.ndarray | tuple[np.ndarray, list[SolveInfo]]:
  """The consistency pass over a processed clip.

  Args:
    processed: [T, H, W, C] the per-frame results (any stylised sequence).
    backward: [T-1, H, W, 2] flows t+1 -> t (package convention), usually of the original frames.
    weights: [T-1, H, W] c_{t+1}, usually `consistency_weights` (or `clip_reliability` alone).
    lam, tolerance, max_iterations: see `screened_poisson_solve`.
    interpolation: how the previous output is moved along the flow, "cubic" (`warp_cubic`) or "linear" (`warp`).
    return_info: also return each solve's SolveInfo.

  Returns:
    [T, H, W, C] float32 (not clipped: values stay near the processed frames' range), and the infos if asked.
  """
  if interpolation not in INTERPOLATIONS:
    raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
  processed = np.asarray(processed, np.float32)
  outputs, infos = [jnp.asarray(processed[0])], []
  for t in range(1, len(processed)):
    output, info = compiled_step(processed[t], outputs[-1], backward[t - 1], weights[t - 1], lam=float(lam),
                                 tolerance=float(tolerance), max_iterations=int(max_iterations),
                                 interpolation=interpolation)
    outputs.append(output)
    infos.append(info)
  result = np.stack([np.asarray(o) for o in outputs])
  return (result, infos) if return_info else result
