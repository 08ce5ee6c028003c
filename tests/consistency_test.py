"""The blind temporal-consistency pass (nst_jax/video/consistency.py) and the warping error
(nst_jax/video/measures.py): the solver against a direct sparse solve, the flicker cut on a synthetic pan, a still
clip left alone, and the warping error against a NumPy/SciPy implementation of Lai et al.'s formula."""

from __future__ import annotations

import logging

import jax
import numpy as np
import pytest
from scipy import ndimage, sparse
from scipy.sparse import linalg as sparse_linalg

from nst_jax import demo
from nst_jax.video import consistency, measures, reliability

FRAMES, SIZE = 8, (40, 48)


@pytest.fixture(scope="module")
def flicker():
  """(clean pan, the pan with per-frame brightness flicker, backward flows, masks): a gain in [0.7, 1.3] and an
  offset in [-0.05, 0.05] drawn per frame."""
  clean, exact = demo.camera_pan(demo.default_content(), frames=FRAMES, size=SIZE, velocity=(2, 1))
  backward = np.broadcast_to(-exact, (FRAMES - 1, *SIZE, 2)).copy()
  masks = np.asarray(reliability.clip_reliability(-backward, backward))
  rng = np.random.default_rng(0)
  gain, offset = rng.uniform(0.7, 1.3, FRAMES), rng.uniform(-0.05, 0.05, FRAMES)
  flickering = np.clip(clean * gain[:, None, None, None] + offset[:, None, None, None], 0, 1).astype(np.float32)
  return clean, flickering, backward, masks


def scipy_warp(image: np.ndarray, field: np.ndarray) -> np.ndarray:
  h, w = image.shape[:2]
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
  coords = [ys + field[..., 1], xs + field[..., 0]]
  return np.stack([ndimage.map_coordinates(image[..., c].astype(np.float64), coords, order=1, mode="nearest")
                   for c in range(image.shape[-1])], -1)


def numpy_warping_error(frames, backward, masks) -> float:
  """Lai et al. 2018: mean over t of sum(M (O_t - warp(O_{t-1}))^2) / (3 sum M), warping with SciPy."""
  errors = []
  for t in range(1, len(frames)):
    warped = scipy_warp(frames[t - 1], backward[t - 1])
    mask = masks[t - 1].astype(np.float64)
    errors.append(np.sum(mask[..., None] * (frames[t] - warped) ** 2) / (3 * mask.sum()))
  return float(np.mean(errors))


def test_warping_error_is_lai_et_al_measure(flicker):
  _, flickering, backward, masks = flicker
  np.testing.assert_allclose(measures.warping_error(flickering, backward, masks),
                             numpy_warping_error(flickering, backward, masks), rtol=1e-5)
  assert measures.warping_error(flickering[:1], backward[:0], masks[:0]) == 0.0


def test_the_pass_cuts_the_warping_error_of_a_flickering_pan_five_fold(flicker):
  clean, flickering, backward, masks = flicker
  assert measures.warping_error(clean, backward, masks) < 1e-10  # exact flow, integer pan: no error to begin with
  before = numpy_warping_error(flickering, backward, masks)
  stable = consistency.temporal_consistency(flickering, backward, masks)
  after = numpy_warping_error(np.clip(stable, 0, 1), backward, masks)
  assert before / after >= 5, (before, after)
  np.testing.assert_array_equal(stable[0], flickering[0])  # the first frame is the anchor


def test_agreement_weights_are_bonneel_et_al_exponential_of_the_warped_difference(flicker):
  clean, flickering, backward, masks = flicker
  for frames in (clean, flickering):
    expected = np.stack([np.exp(-1000.0 * np.mean((frames[t + 1] - scipy_warp(frames[t], backward[t])) ** 2, -1))
                         for t in range(len(frames) - 1)])
    np.testing.assert_allclose(consistency.agreement_weights(frames, backward, alpha=1000.0), expected, rtol=2e-4,
                               atol=1e-6)
  weights = consistency.consistency_weights(clean, -backward, backward, alpha=1000.0)
  np.testing.assert_allclose(weights, masks, atol=1e-5)  # an exact integer pan: full agreement where reliable
  assert consistency.agreement_weights(flickering, backward).mean() < 0.5


def test_a_clip_of_one_repeated_frame_is_left_unchanged():
  frame = demo.mosaic_painting(32, cell=6.0)
  still = np.repeat(frame[None], 5, axis=0)
  zero = np.zeros((4, 32, 32, 2), np.float32)
  masks = np.asarray(reliability.clip_reliability(zero, zero))
  assert masks.min() == 1.0
  stable = consistency.temporal_consistency(still, zero, masks)
  np.testing.assert_allclose(stable, still, atol=1e-6)


def grid_laplacian(h: int, w: int) -> sparse.csr_matrix:
  """The 4-neighbour graph Laplacian of an h x w grid (Neumann boundaries), built edge by edge."""
  index = np.arange(h * w).reshape(h, w)
  edges = np.concatenate([np.stack([index[:, :-1].ravel(), index[:, 1:].ravel()], 1),
                          np.stack([index[:-1].ravel(), index[1:].ravel()], 1)])
  n, m = h * w, len(edges)
  incidence = sparse.csr_matrix((np.r_[np.ones(m), -np.ones(m)], (np.r_[np.arange(m), np.arange(m)],
                                                                  np.r_[edges[:, 0], edges[:, 1]])), shape=(m, n))
  return (incidence.T @ incidence).tocsr()


def test_the_solver_matches_a_direct_sparse_solve():
  rng = np.random.default_rng(4)
  h, w, lam = 11, 13, 0.7
  processed = rng.uniform(0, 1, (h, w, 3)).astype(np.float32)
  target = rng.uniform(0, 1, (h, w, 3)).astype(np.float32)
  weights = (rng.uniform(0, 1, (h, w)) > 0.4) * rng.uniform(0.5, 1, (h, w))
  laplacian = grid_laplacian(h, w)
  system = (laplacian + lam * sparse.diags(weights.ravel())).tocsc()
  expected = np.stack([sparse_linalg.spsolve(system, laplacian @ processed[..., c].ravel().astype(np.float64)
                                             + lam * weights.ravel() * target[..., c].ravel()).reshape(h, w)
                       for c in range(3)], -1)
  solved, info = consistency.screened_poisson_solve(processed, target, weights.astype(np.float32), lam=lam,
                                                    tolerance=1e-6)
  np.testing.assert_allclose(np.asarray(solved), expected, atol=1e-4)
  assert float(info.residual) <= 1e-6 and 0 < int(info.iterations) < 60


def test_a_frame_without_reliable_pixels_keeps_its_processed_values(flicker):
  _, flickering, backward, masks = flicker
  stable = consistency.temporal_consistency(flickering[:3], backward[:2], np.zeros_like(masks[:2]))
  np.testing.assert_array_equal(stable, flickering[:3])


def test_one_compilation_serves_every_frame_of_a_clip(flicker, caplog):
  _, flickering, backward, masks = flicker
  with caplog.at_level(logging.WARNING), jax.log_compiles():
    consistency.temporal_consistency(flickering[:6, :36, :44], backward[:5, :36, :44], masks[:5, :36, :44],
                                     lam=0.5)
    consistency.temporal_consistency(flickering[:4, :36, :44], backward[:3, :36, :44], masks[:3, :36, :44],
                                     lam=2.0)
  # 36 x 44: a size no other test compiles
  compiles = [r for r in caplog.records if r.getMessage().startswith("Compiling jit(consistency_step)")]
  assert len(compiles) == 1, [r.getMessage() for r in compiles]


def test_the_cubic_pass_keeps_a_sub_pixel_pans_detail_that_the_bilinear_one_blurs():
  """The pass over the exact frames of a sub-pixel pan with the stylised weight: each frame's previous output is
  moved by a fractional shift, so bilinear sampling low-passes it once per frame. With cubic convolution the last
  frame stays closer to the true one (RMS error 0.017 against 0.031) and keeps more of its detail."""
  clean, exact = demo.camera_pan(demo.default_content(), frames=FRAMES, size=SIZE, velocity=(1.5, 0.5))
  backward = np.broadcast_to(-exact, (FRAMES - 1, *SIZE, 2)).copy()
  masks = np.asarray(reliability.clip_reliability(-backward, backward))
  mask = masks[-1][..., None]
  errors, detail = {}, {}
  for interpolation in consistency.INTERPOLATIONS:
    last = consistency.temporal_consistency(clean, backward, masks, lam=consistency.STYLIZED_LAMBDA,
                                            interpolation=interpolation)[-1]
    errors[interpolation] = np.sqrt(np.sum(mask * (last - clean[-1]) ** 2) / (3 * np.sum(mask)))
    detail[interpolation] = np.mean(np.abs(np.diff(last * mask, axis=1)))
  assert errors["cubic"] < 0.7 * errors["linear"], errors
  assert detail["linear"] < detail["cubic"] < np.mean(np.abs(np.diff(clean[-1] * mask, axis=1))), detail
  with pytest.raises(ValueError, match="interpolation"):
    consistency.temporal_consistency(clean, backward, masks, interpolation="nearest")
