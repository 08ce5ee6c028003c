"""Closed-form photorealistic smoothing against a SciPy sparse solve of Li et al.'s formula."""

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg

from nst_jax.methods.photoreal import closed_form


def affinity_matrix(guide: np.ndarray, eps: float) -> scipy.sparse.csr_matrix:
  """Levin et al.'s matting affinity W (N x N) of an (H, W, 3) guide, built window by window in float64."""
  h, w, _ = guide.shape
  index = np.arange(h * w).reshape(h, w)
  rows, cols, vals = [], [], []
  for y in range(1, h - 1):
    for x in range(1, w - 1):
      win = guide[y - 1:y + 2, x - 1:x + 2].reshape(9, 3).astype(np.float64)
      mu = win.mean(axis=0)
      cov = (win - mu).T @ (win - mu) / 9
      inv = np.linalg.inv(cov + eps / 9 * np.eye(3))
      block = (1 + (win - mu) @ inv @ (win - mu).T) / 9
      ids = index[y - 1:y + 2, x - 1:x + 2].reshape(9)
      rows.extend(np.repeat(ids, 9))
      cols.extend(np.tile(ids, 9))
      vals.extend(block.reshape(-1))
  return scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(h * w, h * w)).tocsr()


def reference_smoothing(stylized: np.ndarray, content: np.ndarray, lam: float, eps: float,
                        degree_normalized: bool) -> np.ndarray:
  """R = (1 − α)(I − αS)⁻¹ Y with S = D^(-1/2) W D^(-1/2), α = 1 / (1 + λ): the paper's formula, spsolve; D the
  affinity's row sums. Without degree normalisation, self-affinities bring every row sum to 9 (what it is where
  every window fits), so that D = 9 I."""
  h, w, _ = content.shape
  affinity = affinity_matrix(content, eps)
  d = np.asarray(affinity.sum(axis=1)).ravel()
  if not degree_normalized:
    affinity = affinity + scipy.sparse.diags(9.0 - d)
    d = np.full(h * w, 9.0)
  inv_sqrt = scipy.sparse.diags(1 / np.sqrt(d))
  alpha = 1 / (1 + lam)
  system = (scipy.sparse.identity(h * w) - alpha * inv_sqrt @ affinity @ inv_sqrt).tocsc()
  out = scipy.sparse.linalg.spsolve(system, (1 - alpha) * stylized.reshape(-1, 3).astype(np.float64))
  return out.reshape(h, w, 3)


@pytest.fixture(scope="module")
def pair():
  """A content with a flat region (where the affinity is nearly singular at ε = 1e-7), an edge and texture, and a
  noisy recoloured version of it as the stylised image."""
  rng = np.random.default_rng(0)
  h, w = 12, 14
  content = np.zeros((h, w, 3))
  content[:, : w // 2] = [0.2, 0.4, 0.7]
  content[:, w // 2:] = rng.uniform(0, 1, (h, w - w // 2, 3))
  stylized = np.clip(content[..., ::-1] + 0.2 * rng.standard_normal(content.shape), 0, 1)
  return content.astype(np.float32), stylized.astype(np.float32)


@pytest.mark.parametrize("degree_normalized", [False, True])
@pytest.mark.parametrize("lam", [1e-4, 1e-2])
def test_conjugate_gradients_equal_a_sparse_solve(pair, lam, degree_normalized):
  content, stylized = pair
  result = closed_form.smooth(stylized=stylized, content=content, lam=lam, rtol=1e-6, max_iterations=2000,
                              degree_normalized=degree_normalized)
  expected = reference_smoothing(stylized, content, lam, closed_form.EPSILON, degree_normalized)
  np.testing.assert_allclose(result.image, expected, atol=1e-4)
  # The smoothing changes the image: the comparison is not between two copies of Y.
  assert np.abs(expected - stylized).mean() > 0.05


def test_noise_in_a_flat_region_is_removed(pair):
  """Noise over the flat half of the content is smoothed away (to its mean, up to the border as well)."""
  content, _ = pair
  rng = np.random.default_rng(1)
  noisy = (0.5 + 0.1 * rng.standard_normal(content.shape)).astype(np.float32)
  result = closed_form.smooth(stylized=noisy, content=content)
  flat = slice(None), slice(0, content.shape[1] // 2 - 1)
  assert result.image[flat].std(axis=(0, 1)).max() < 0.1 * noisy[flat].std()
  np.testing.assert_allclose(result.image[flat].mean(), noisy.mean(), atol=0.03)


def test_degree_normalisation_darkens_the_border_by_the_square_root_of_the_window_count(pair):
  """The paper's normalised system turns a flat image into one proportional to sqrt(c_i) (the module docstring):
  the corner at 1/3 of the interior, the edges at 1/sqrt(3)."""
  content, _ = pair
  flat = np.full(content.shape, 0.6, np.float32)
  paper = closed_form.smooth(stylized=flat, content=content, degree_normalized=True).image
  kept = closed_form.smooth(stylized=flat, content=content).image
  np.testing.assert_allclose(paper[0, 0] / paper[5, 3], 1 / 3, rtol=0.02)
  np.testing.assert_allclose(paper[5, 0] / paper[5, 3], 1 / np.sqrt(3), rtol=0.02)
  np.testing.assert_allclose(kept, flat, atol=1e-4)


def test_a_gray_image_stays_gray(pair):
  """The three channels share one operator: a gray stylised image (equal channels) gives a gray result."""
  content, stylized = pair
  gray = np.repeat(stylized.mean(axis=-1, keepdims=True), 3, axis=-1)
  result = closed_form.smooth(stylized=gray, content=content)
  np.testing.assert_allclose(result.image[..., 0], result.image[..., 1], atol=1e-6)
  np.testing.assert_allclose(result.image[..., 0], result.image[..., 2], atol=1e-6)


def test_bad_shapes_are_refused(pair):
  content, stylized = pair
  with pytest.raises(ValueError, match="one size"):
    closed_form.smooth(stylized=stylized[:-1], content=content)
  with pytest.raises(ValueError, match="positive"):
    closed_form.smooth(stylized=stylized, content=content, lam=0.0)


@pytest.fixture(scope="module")
def larger_pair():
  """A 40x56 content of flat blocks and textured ones, and a noisy recoloured version of it."""
  rng = np.random.default_rng(2)
  content = np.kron(rng.uniform(0, 1, (5, 7, 3)), np.ones((8, 8, 1)))
  content[:, 24:40] = rng.uniform(0, 1, (40, 16, 3))
  stylized = np.clip(content[..., ::-1] + 0.2 * rng.standard_normal(content.shape), 0, 1)
  return content.astype(np.float32), stylized.astype(np.float32)


def test_tiles_agree_with_the_whole_image_solve(larger_pair):
  content, stylized = larger_pair
  whole = closed_form.smooth(stylized=stylized, content=content, lam=3e-3, rtol=1e-5).image
  one = closed_form.smooth_in_tiles(stylized=stylized, content=content, tile=64, overlap=8, lam=3e-3, rtol=1e-5)
  np.testing.assert_array_equal(one.image, whole)  # one tile: the whole-image solve itself
  tiled = closed_form.smooth_in_tiles(stylized=stylized, content=content, tile=32, overlap=12, lam=3e-3,
                                      rtol=1e-5).image
  # Solved alone, each tile errs only near its borders (measured: mean 1.4e-3, max 0.02 against a change of the
  # image by the smoothing itself 30x larger on average).
  error = np.abs(tiled - whole)
  assert error.mean() < 2e-3 and error.max() < 0.03
  assert np.abs(whole - stylized).mean() > 20 * error.mean()
