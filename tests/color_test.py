"""Colour control (Gatys et al. 2017, section 5) against NumPy transcriptions of the YIQ and moment formulas."""

import jax
import numpy as np
import pytest

from nst_jax import demo, metrics
from nst_jax.io import image_io
from nst_jax.losses import color

RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                       [0.595716, -0.274453, -0.321263],
                       [0.211456, -0.522591, 0.311135]])


def yiq(image):
  return np.asarray(image, np.float64) @ RGB_TO_YIQ.T


def mean_cov(image):
  pixels = np.asarray(image, np.float64).reshape(-1, 3)
  return pixels.mean(axis=0), np.cov(pixels, rowvar=False, bias=True)


@pytest.fixture(scope="module")
def style():
  return demo.swirl_painting(64)


def test_yiq_round_trip_and_pure_colours():
  rng = np.random.default_rng(0)
  rgb = rng.uniform(0, 1, (7, 5, 3)).astype(np.float32)
  back = jax.jit(lambda x: color.yiq_to_rgb(color.rgb_to_yiq(x)))(rgb)
  np.testing.assert_allclose(back, rgb, atol=1e-6)
  np.testing.assert_allclose(color.rgb_to_yiq(rgb), yiq(rgb), atol=1e-6)
  pure = np.eye(3, dtype=np.float32)  # red, green, blue
  np.testing.assert_allclose(color.rgb_to_yiq(pure)[:, 0], [0.299, 0.587, 0.114], atol=1e-7)
  # White has Y = 1 and no chroma.
  np.testing.assert_allclose(color.rgb_to_yiq(np.ones(3, np.float32)), [1, 0, 0], atol=1e-6)


def test_luminance_image_is_gray_y(content):
  gray = np.asarray(jax.jit(color.luminance_image)(content))
  for c in range(3):
    np.testing.assert_allclose(gray[..., c], yiq(content)[..., 0], atol=1e-6)


def test_match_luminance_moments(content, style):
  matched = color.match_luminance(style, content)
  assert matched.shape == style.shape and matched.dtype == np.float32
  np.testing.assert_array_equal(matched[..., 0], matched[..., 1])
  np.testing.assert_array_equal(matched[..., 0], matched[..., 2])
  l_m, l_c = yiq(matched)[..., 0], yiq(content)[..., 0]
  np.testing.assert_allclose(l_m.mean(), l_c.mean(), atol=1e-4)
  np.testing.assert_allclose(l_m.std(), l_c.std(), atol=1e-4)
  # Order of the style's luminances is kept (positive affine map).
  l_s = yiq(style)[..., 0]
  assert np.corrcoef(l_s.ravel(), l_m.ravel())[0, 1] > 0.9999


@pytest.mark.parametrize("method", ["cholesky", "eigen"])
def test_histogram_matching_moments(content, style, method):
  matched = color.match_color_histogram(style, content, method=method)
  assert matched.shape == style.shape and matched.dtype == np.float32
  mu_m, cov_m = mean_cov(matched)
  mu_c, cov_c = mean_cov(content)
  np.testing.assert_allclose(mu_m, mu_c, atol=1e-3)
  np.testing.assert_allclose(cov_m, cov_c, atol=1e-3)
  # Both images' colour variances exceed eps, so no regularisation applies and the match is exact.
  np.testing.assert_allclose(cov_m, cov_c, atol=1e-6)
  # The other direction too (content recoloured like the painting).
  mu_s, cov_s = mean_cov(style)
  mu_r, cov_r = mean_cov(color.match_color_histogram(content, style, method=method))
  np.testing.assert_allclose(mu_r, mu_s, atol=1e-3)
  np.testing.assert_allclose(cov_r, cov_s, atol=1e-3)


def test_histogram_methods_differ_but_both_hold(content, style):
  a_chol, _ = color.histogram_transform(style, content, method="cholesky")
  a_eig, _ = color.histogram_transform(style, content, method="eigen")
  assert np.abs(a_chol - a_eig).max() > 1e-2
  _, cov_s = mean_cov(style)
  _, cov_c = mean_cov(content)
  assert np.linalg.eigvalsh(cov_s).min() > 1e-5  # so no regularisation applies and the map must be exact
  for a in (a_chol, a_eig):  # both map the source covariance exactly onto the target's
    np.testing.assert_allclose(a @ cov_s @ a.T, cov_c, rtol=1e-9, atol=1e-12)
  # Cholesky's A is lower triangular (product of lower triangular factors); the eigen variant's is not.
  np.testing.assert_allclose(np.triu(a_chol, 1), 0, atol=1e-12)
  # The eigen variant, Sigma_t^1/2 Sigma_s^-1/2, is a product of symmetric matrices: check against scipy.
  from scipy import linalg
  want = linalg.sqrtm(cov_c) @ linalg.inv(linalg.sqrtm(cov_s))
  np.testing.assert_allclose(a_eig, np.real(want), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("method", ["cholesky", "eigen"])
def test_histogram_matching_identity(content, method):
  np.testing.assert_allclose(color.match_color_histogram(content, content, method=method), content, atol=1e-5)


def test_histogram_matching_clip_and_bad_method(content, style):
  clipped = color.match_color_histogram(style, content, clip=True)
  assert clipped.min() >= 0.0 and clipped.max() <= 1.0
  with pytest.raises(ValueError, match="method"):
    color.match_color_histogram(style, content, method="lab")


def _check_combined(out, *, stylized, content):
  out = np.asarray(out, np.float64)
  assert out.shape == content.shape and out.min() >= 0.0 and out.max() <= 1.0
  yiq_out, yiq_c = yiq(out), yiq(content)
  mae_iq = np.abs(yiq_out[..., 1:] - yiq_c[..., 1:]).mean(axis=(0, 1))
  assert np.all(mae_iq <= 1.5 / 255), mae_iq
  np.testing.assert_allclose(yiq_out[..., 1:], yiq_c[..., 1:], atol=1e-5)  # chroma is in fact exact
  # Where the stylised Y with the content's chroma is a valid colour, it is the output unchanged.
  y_s = yiq(stylized)[..., 0]
  wanted = np.concatenate([y_s[..., None], yiq_c[..., 1:]], axis=-1) @ np.linalg.inv(RGB_TO_YIQ).T
  in_gamut = np.all((wanted >= 0) & (wanted <= 1), axis=-1)
  np.testing.assert_allclose(yiq_out[..., 0][in_gamut], y_s[in_gamut], atol=1e-5)
  # Elsewhere Y moved only as far as the gamut boundary: some channel sits at 0 or 1.
  at_boundary = np.any((out <= 1e-5) | (out >= 1 - 1e-5), axis=-1)
  assert np.all(at_boundary[~in_gamut])
  return in_gamut


def test_combine_luminance_with_painting(content, style):
  stylized = np.asarray(color.luminance_image(image_io.resize(style, *content.shape[:2])))
  out = jax.jit(color.combine_luminance)(stylized=stylized, content=content)
  _check_combined(out, stylized=stylized, content=content)


def test_combine_luminance_inverted_luminance(content):
  """Inverting the luminance pushes many pixels out of gamut, where naive clipping would shift their hue."""
  stylized = 1.0 - content
  out = color.combine_luminance(stylized=stylized, content=content)
  in_gamut = _check_combined(out, stylized=stylized, content=content)
  assert (~in_gamut).mean() > 0.05  # the test exercises the out-of-gamut path
  naive = np.clip(np.concatenate([yiq(stylized)[..., :1], yiq(content)[..., 1:]], axis=-1)
                  @ np.linalg.inv(RGB_TO_YIQ).T, 0, 1)
  assert np.abs(yiq(naive)[..., 1:] - yiq(content)[..., 1:]).max() > 0.02


def test_match_region_colors_moves_each_region_to_its_style_region_moments():
  """Hard masks: each content region gets its style region's colour mean and covariance exactly (NumPy moments);
  among moment-matching maps it is the symmetric positive definite one (the optimal-transport map), so an image
  matched to itself is unchanged; a region empty in the style keeps its colours."""
  rng = np.random.default_rng(1)
  content = rng.uniform(0.2, 0.8, (24, 32, 3)) * np.array([1.0, 0.7, 0.4])
  style = rng.uniform(0.0, 1.0, (20, 30, 3)) ** 2
  c_masks = np.zeros((3, 24, 32)); c_masks[0, :, :10] = 1; c_masks[1, :, 10:] = 1; c_masks[2, :, :] = 0
  c_masks[2, :4, 10:] = 1; c_masks[1, :4, 10:] = 0
  s_masks = np.zeros((3, 20, 30)); s_masks[0, :8] = 1; s_masks[1, 8:] = 1  # region 2 absent in the style
  out = color.match_region_colors(content, style, content_masks=c_masks, style_masks=s_masks, eps=1e-9)
  for r in (0, 1):
    got_mean, got_cov = mean_cov(out[c_masks[r] > 0])
    want_mean, want_cov = mean_cov(style[s_masks[r] > 0])
    np.testing.assert_allclose(got_mean, want_mean, atol=1e-5)
    np.testing.assert_allclose(got_cov, want_cov, atol=1e-5)
  np.testing.assert_allclose(out[c_masks[2] > 0], content[c_masks[2] > 0], atol=1e-6)
  same = color.match_region_colors(content, content, content_masks=c_masks, style_masks=c_masks, eps=1e-9)
  np.testing.assert_allclose(same, content, atol=1e-5)
  # The map within a region is affine: zero colour change beyond the moments (checked on one region's pixels).
  pixels, mapped = content[c_masks[0] > 0], out[c_masks[0] > 0]
  design = np.concatenate([pixels, np.ones((len(pixels), 1))], axis=1)
  coef, residual, *_ = np.linalg.lstsq(design, mapped, rcond=None)
  assert np.max(np.abs(design @ coef - mapped)) < 1e-5
  np.testing.assert_allclose(coef[:3], coef[:3].T, atol=1e-6)  # symmetric A


def test_match_region_colors_blends_soft_borders():
  content = np.full((4, 8, 3), 0.5)
  style = np.concatenate([np.zeros((4, 4, 3)) + 0.1, np.zeros((4, 4, 3)) + 0.9], axis=1)
  ramp = np.linspace(0, 1, 8)[None, :].repeat(4, axis=0)
  c_masks = np.stack([1 - ramp, ramp])
  s_masks = np.stack([np.repeat([[1.0] * 4 + [0.0] * 4], 4, 0), np.repeat([[0.0] * 4 + [1.0] * 4], 4, 0)])
  out = color.match_region_colors(content, style, content_masks=c_masks, style_masks=s_masks)
  np.testing.assert_allclose(out[..., 0], 0.1 * (1 - ramp) + 0.9 * ramp, atol=1e-6)


def test_match_chroma_statistics_gives_the_references_chroma_moments_and_keeps_luma():
  rng = np.random.default_rng(3)
  image = 0.3 + 0.4 * rng.uniform(size=(20, 24, 3))
  refs = [0.35 + 0.3 * rng.uniform(size=(16, 16, 3)), 0.4 + 0.2 * rng.uniform(size=(12, 18, 3))]
  out = color.match_chroma_statistics(image, refs, weights=[0.25, 0.75])
  assert out.min() > 0 and out.max() < 1  # no clipping here, so the moments are exact
  got, want_y = yiq(out), yiq(image)[..., 0]
  np.testing.assert_allclose(got[..., 0], want_y, atol=1e-5)
  stats = [(yiq(r)[..., 1:].reshape(-1, 2).mean(0), yiq(r)[..., 1:].reshape(-1, 2).std(0)) for r in refs]
  np.testing.assert_allclose(got[..., 1:].reshape(-1, 2).mean(0), 0.25 * stats[0][0] + 0.75 * stats[1][0], atol=1e-5)
  np.testing.assert_allclose(got[..., 1:].reshape(-1, 2).std(0), 0.25 * stats[0][1] + 0.75 * stats[1][1], atol=1e-5)
  gray = color.match_chroma_statistics(image, [np.repeat(rng.uniform(size=(8, 8, 1)), 3, axis=-1)])
  np.testing.assert_allclose(gray.max(-1) - gray.min(-1), 0, atol=1e-5)  # a gray style gives a gray image


def test_fit_region_chroma_is_each_regions_least_squares_quadratic_of_the_content_colour():
  """Two hard regions: the result's chroma equals a float64 NumPy least-squares fit per region of the chroma on the
  degree-2 monomials of the content's YIQ; luma is untouched; a chroma that is already such a function plus a
  smooth patch comes back as the function (the patch is gone); a gray image stays gray."""
  rng = np.random.default_rng(4)
  content = 0.2 + 0.6 * rng.uniform(size=(48, 64, 3))
  image = 0.2 + 0.6 * rng.uniform(size=(48, 64, 3))
  masks = np.zeros((2, 48, 64)); masks[0, :, :24] = 1; masks[1, :, 24:] = 1
  out = color.fit_region_chroma(image, content, content_masks=masks, ridge=0.0)
  c_yiq, i_yiq, got = (np.asarray(yiq(x), np.float64) for x in (content, image, out))
  np.testing.assert_allclose(got[..., 0], i_yiq[..., 0], atol=1e-5)
  y, i, q = np.moveaxis(c_yiq, -1, 0)
  design = np.stack([np.ones_like(y), y, i, q, y * y, i * i, q * q, y * i, y * q, i * q], -1)
  for mask in masks.astype(bool):
    coef = np.linalg.lstsq(design[mask], i_yiq[mask][:, 1:], rcond=None)[0]
    np.testing.assert_allclose(got[mask][:, 1:], design[mask] @ coef, atol=2e-5)
  # A result whose chroma is a function of the content's colour, with a slow patch added in a flat area.
  mapped = c_yiq.copy()
  mapped[..., 1] = 0.05 - 0.2 * c_yiq[..., 1] + 0.3 * c_yiq[..., 0] * c_yiq[..., 2]
  mapped[..., 2] = -0.02 + 0.5 * c_yiq[..., 2] ** 2
  patch = mapped.copy()
  patch[16:20, 8:13, 1:] += np.array([0.03, -0.02])  # a small green patch: it is not a function of the content
  rgb = lambda x: np.asarray(color.yiq_to_rgb(np.asarray(x, np.float32)))  # noqa: E731
  fixed = np.asarray(yiq(color.fit_region_chroma(rgb(patch), content, content_masks=masks)), np.float64)
  # Least squares leaks the patch's share of its region (20 of 1152 pixels) into the fit.
  np.testing.assert_allclose(fixed[..., 1:], mapped[..., 1:], atol=0.1 * 0.03)
  assert np.abs(fixed[16:20, 8:13, 1:] - mapped[16:20, 8:13, 1:]).max() < 0.1 * 0.03
  gray = np.repeat(rng.uniform(size=(48, 64, 1)), 3, axis=-1)
  out_gray = color.fit_region_chroma(gray, content, content_masks=masks)
  np.testing.assert_allclose(out_gray.max(-1) - out_gray.min(-1), 0, atol=1e-5)


def test_match_style_mixture_gives_each_region_its_blend_of_the_styles_moments():
  """One region with a 1:3 blend of two styles of different sizes gets the mixture's mean and covariance (each
  style counted by its weight, not its pixel count; NumPy moments of the mixture); two regions each get their own
  style's moments; pixels no mask covers keep their colours."""
  rng = np.random.default_rng(4)
  content = 0.3 + 0.4 * rng.uniform(size=(20, 24, 3)) * np.array([1.0, 0.6, 0.8])
  styles = [0.4 + 0.2 * rng.uniform(size=(16, 16, 3)), 0.35 + 0.3 * rng.uniform(size=(12, 30, 3)) ** 2]
  out = color.match_style_mixture(content, styles, region_masks=np.ones((1, 20, 24)),
                                  region_style_weights=np.array([[0.25, 0.75]]))
  assert out.min() > 0 and out.max() < 1  # nothing clipped, so the moments are exact
  moments = [mean_cov(s.reshape(-1, 3)) for s in styles]
  want_mean = 0.25 * moments[0][0] + 0.75 * moments[1][0]
  want_cov = sum(w * (cov + np.outer(mu, mu)) for w, (mu, cov) in zip((0.25, 0.75), moments))
  want_cov -= np.outer(want_mean, want_mean)
  got_mean, got_cov = mean_cov(out.reshape(-1, 3))
  np.testing.assert_allclose(got_mean, want_mean, atol=1e-5)
  np.testing.assert_allclose(got_cov, want_cov, atol=1e-5)

  masks = np.zeros((2, 20, 24)); masks[0, :, :8] = 1; masks[1, :, 8:16] = 1  # columns 16.. uncovered
  out = color.match_style_mixture(content, styles, region_masks=masks, region_style_weights=np.eye(2))
  for r in (0, 1):
    got_mean, got_cov = mean_cov(out[masks[r] > 0])
    np.testing.assert_allclose(got_mean, moments[r][0], atol=1e-5)
    np.testing.assert_allclose(got_cov, moments[r][1], atol=1e-5)
  np.testing.assert_allclose(out[:, 16:], content[:, 16:], atol=1e-6)


def test_distribution_transfer_moves_the_whole_palette():
  """'distribution' gives the content the style's colour distribution, not only its moments: a style of two colour
  clusters (orange and teal) gives an output whose pixels fall into the two clusters in the style's proportions,
  where the moments' linear map spreads them between; a style made of the content's own pixels leaves it as it is;
  regions get their own style's palette and uncovered pixels keep their colours."""
  rng = np.random.default_rng(5)
  content = np.clip(0.55 + 0.12 * rng.standard_normal((24, 32, 3)) * np.array([1.0, 0.7, 0.9]), 0, 1)
  orange, teal = np.array([0.9, 0.45, 0.1]), np.array([0.1, 0.4, 0.45])
  style = np.where(rng.uniform(size=(30, 30, 1)) < 0.3, orange, teal) + 0.02 * rng.standard_normal((30, 30, 3))
  one = dict(region_masks=np.ones((1, 24, 32)), region_style_weights=np.ones((1, 1)))
  moments = color.match_style_mixture(content, [style], **one)
  distribution = color.match_style_mixture(content, [style], method="distribution", **one)
  near = lambda img, c: np.mean(np.linalg.norm(img.reshape(-1, 3) - c, axis=1) < 0.1)  # noqa: E731
  assert near(distribution, orange) == pytest.approx(0.3, abs=0.05)
  assert near(distribution, teal) == pytest.approx(0.7, abs=0.05)
  assert near(moments, orange) + near(moments, teal) < 0.6  # the linear map leaves many pixels in between
  assert metrics.palette_distance(distribution, style) < 0.3 * metrics.palette_distance(moments, style)

  shuffled = rng.permutation(content.reshape(-1, 3)).reshape(content.shape)
  np.testing.assert_allclose(color.match_style_mixture(content, [shuffled], method="distribution", **one), content,
                             atol=1e-6)

  masks = np.zeros((2, 24, 32)); masks[0, :, :12] = 1; masks[1, :, 12:24] = 1  # columns 24.. uncovered
  styles = [style, np.clip(0.3 + 0.1 * rng.standard_normal((20, 20, 3)), 0, 1)]
  out = color.match_style_mixture(content, styles, region_masks=masks, region_style_weights=np.eye(2),
                                  method="distribution")
  for r in (0, 1):
    assert metrics.palette_distance(out[masks[r] > 0], styles[r]) < 0.02
  np.testing.assert_allclose(out[:, 24:], content[:, 24:], atol=1e-6)
  with pytest.raises(ValueError, match="method"):
    color.match_style_mixture(content, [style], method="histogram", **one)
