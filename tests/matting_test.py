"""The matrix-free matting Laplacian against a SciPy sparse transcription of Levin et al. (2008)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import sparse

from nst_jax.losses import matting


def levin_laplacian(guide: np.ndarray, eps: float = matting.EPSILON) -> sparse.csr_matrix:
  """Levin et al.'s L as a sparse matrix, window by window in float64 (their getLaplacian1, 3x3 windows fully
  inside the image): L_ij = sum_k (δ_ij − (1 + (I_i − μ_k)ᵀ (Σ_k + ε/9 I)⁻¹ (I_j − μ_k)) / 9)."""
  h, w, _ = guide.shape
  index = np.arange(h * w).reshape(h, w)
  rows, cols, vals = [], [], []
  for y in range(1, h - 1):
    for x in range(1, w - 1):
      ids = index[y - 1:y + 2, x - 1:x + 2].ravel()
      colours = guide[y - 1:y + 2, x - 1:x + 2].reshape(9, 3).astype(np.float64)
      mu = colours.mean(axis=0)
      centred = colours - mu
      sigma = centred.T @ centred / 9
      block = np.eye(9) - (1 + centred @ np.linalg.inv(sigma + eps / 9 * np.eye(3)) @ centred.T) / 9
      rows.append(np.repeat(ids, 9))
      cols.append(np.tile(ids, 9))
      vals.append(block.ravel())
  return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                           shape=(h * w, h * w))


def apply_np(matrix: sparse.csr_matrix, p: np.ndarray) -> np.ndarray:
  h, w, c = p.shape
  return np.stack([matrix @ p[..., i].ravel() for i in range(c)], axis=-1).reshape(h, w, c)


@pytest.fixture(scope="module")
def apply64():
  """The operator in float64, in a jax config context so that the rest of the test session stays float32."""
  def run(guide, p, guided_filter=False):
    with jax.enable_x64(True):
      if guided_filter:
        lap = matting.precompute_guided_filter(guide, dtype=jnp.float64)
        return np.asarray(matting.apply_laplacian_guided_filter(jnp.asarray(p, jnp.float64), lap))
      lap = matting.precompute(guide, dtype=jnp.float64)
      return np.asarray(matting.apply_laplacian(jnp.asarray(p, jnp.float64), lap))
  return run


apply32 = jax.jit(matting.apply_laplacian)


@pytest.mark.parametrize("shape", [(7, 9), (12, 10), (3, 3)])
def test_matches_levin_sparse_laplacian(shape, apply64):
  rng = np.random.default_rng(sum(shape))
  guide = rng.uniform(0, 1, (*shape, 3))
  p = rng.uniform(0, 1, (*shape, 3))
  want = apply_np(levin_laplacian(guide), p)
  np.testing.assert_allclose(apply64(guide, p), want, rtol=0, atol=1e-8 * np.abs(want).max())
  np.testing.assert_allclose(apply64(guide, p, guided_filter=True), want, rtol=0, atol=1e-8 * np.abs(want).max())
  got32 = np.asarray(apply32(jnp.asarray(p, jnp.float32), matting.precompute(guide)))
  assert np.max(np.abs(got32 - want)) <= 1e-5 * np.abs(want).max()


def test_float32_photo_like_guide_with_flat_regions_is_accurate_and_finite(apply64):
  """8-bit guide with perfectly flat patches (Δ⁻¹ ~ 1e8) and gentle gradients next to sharp edges."""
  h, w = 20, 24
  yy, xx = np.mgrid[0:h, 0:w] / 24.0
  guide = np.stack([np.where(xx > 0.5, 0.8, 0.2), 0.3 + 0.05 * yy, np.full_like(xx, 0.5)], axis=-1)
  guide[:8, :8] = 0.6  # perfectly flat block
  guide = np.round(guide * 255) / 255
  p = np.random.default_rng(0).uniform(0, 1, (h, w, 3))
  want = apply_np(levin_laplacian(guide), p)
  np.testing.assert_allclose(apply64(guide, p, guided_filter=True), want, rtol=0, atol=1e-8 * np.abs(want).max())
  boxed = matting.precompute_guided_filter(guide)
  assert float(jnp.max(jnp.abs(boxed["inverse"]))) > 1e7  # the regime where a float32 precomputation breaks
  lap = matting.precompute(guide)
  got = np.asarray(apply32(jnp.asarray(p, jnp.float32), lap))
  assert np.all(np.isfinite(got))
  assert np.max(np.abs(got - want)) <= 1e-5 * np.abs(want).max()
  # The literal box-filter form in float32 is finite but loses digits here (why apply_laplacian regroups it).
  literal = np.asarray(jax.jit(matting.apply_laplacian_guided_filter)(jnp.asarray(p, jnp.float32), boxed))
  assert np.all(np.isfinite(literal))
  assert np.max(np.abs(literal - want)) > 1e-3 * np.abs(want).max()
  energy, grad = jax.value_and_grad(lambda x: matting.matting_energy(image=x, laplacian=lap))(
      jnp.asarray(p, jnp.float32))
  assert np.isfinite(float(energy)) and np.all(np.isfinite(np.asarray(grad)))
  # Flat image of a flat guide (Δ⁻¹ = 9/ε everywhere): finite, and zero up to float32 rounding of its scale
  # sum_i c_i p_i² = 0.09 * 576.
  flat = matting.precompute(np.full((10, 10, 3), 0.5))
  value = float(matting.matting_energy(image=jnp.full((10, 10, 3), 0.3), laplacian=flat))
  assert np.isfinite(value) and abs(value) < 1e-6 * 0.09 * 576


def test_symmetric_psd_and_annihilates_locally_affine_functions(apply64):
  h, w = 6, 7
  rng = np.random.default_rng(1)
  guide = rng.uniform(0, 1, (h, w, 3))
  eye = np.eye(h * w).reshape(h * w, h, w).transpose(1, 2, 0)  # every basis image as a channel
  dense = apply64(guide, eye).reshape(h * w, h * w)              # column j = L e_j
  np.testing.assert_allclose(dense, dense.T, atol=1e-9)
  eigenvalues = np.linalg.eigvalsh(dense)
  assert eigenvalues.min() > -1e-9 * eigenvalues.max()
  # Constants and affine functions of the guide (one per channel) are in the null space (up to the ε term).
  affine = np.stack([np.full((h, w), 0.7), guide @ [0.3, -0.5, 0.9] + 0.1, guide @ [1.0, 0.0, 0.0]], axis=-1)
  assert np.max(np.abs(apply64(guide, affine))) < 1e-5
  assert np.max(np.abs(apply64(guide, rng.uniform(0, 1, (h, w, 3))))) > 0.1  # random images are not
  # A function affine in the guide only piecewise (different maps left and right) is annihilated away from the seam.
  piecewise = np.where(np.arange(w) < 3, guide @ [0.5, 0.2, 0.1], guide @ [-0.4, 0.3, 1.0] + 0.5)
  lp = apply64(guide, piecewise[..., None])[..., 0]
  assert np.max(np.abs(lp[:, :1])) < 1e-5 and np.max(np.abs(lp[:, 6:])) < 1e-5


def test_energy_and_gradient_are_quadratic_form(apply64):
  rng = np.random.default_rng(2)
  guide = rng.uniform(0, 1, (8, 9, 3))
  p = rng.uniform(0, 1, (8, 9, 3))
  matrix = levin_laplacian(guide)
  lap = matting.precompute(guide)
  energy, grad = jax.value_and_grad(lambda x: matting.matting_energy(image=x, laplacian=lap))(
      jnp.asarray(p, jnp.float32))
  want = sum(p[..., c].ravel() @ (matrix @ p[..., c].ravel()) for c in range(3))
  np.testing.assert_allclose(float(energy), want, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(grad), 2 * apply_np(matrix, p), rtol=0,
                             atol=1e-5 * np.abs(apply_np(matrix, p)).max() * 2)
  per_pixel = np.asarray(matting.matting_energy_map(image=jnp.asarray(p, jnp.float32), laplacian=lap))
  assert per_pixel.shape == (8, 9)
  np.testing.assert_allclose(per_pixel.sum(), want, rtol=1e-5)
