"""Measurement helpers: SSIM's defining properties and the wavelength of known periodic patterns."""

import numpy as np
import pytest

from nst_jax import metrics


def stripes(period: float, size: int = 96) -> np.ndarray:
  x = np.arange(size)
  g = 0.5 + 0.4 * np.sin(2 * np.pi * x / period)
  return np.repeat(np.tile(g, (size, 1))[..., None], 3, axis=-1)


def test_ssim_identity_symmetry_and_monotone_in_noise():
  rng = np.random.default_rng(0)
  a = metrics.gray(stripes(12.0)) + 0.05 * rng.standard_normal((96, 96))
  assert metrics.ssim(a, a) == pytest.approx(1.0)
  noisy1 = a + 0.05 * rng.standard_normal(a.shape)
  noisy2 = a + 0.2 * rng.standard_normal(a.shape)
  assert metrics.ssim(a, noisy1) == pytest.approx(metrics.ssim(noisy1, a))
  assert 1.0 > metrics.ssim(a, noisy1) > metrics.ssim(a, noisy2) > 0.0
  # Constant images of different brightness: only the luminance term differs.
  c1, c2 = 1e-4, 9e-4
  want = (2 * 0.3 * 0.6 + c1) / (0.3**2 + 0.6**2 + c1)
  assert metrics.ssim(np.full((32, 32), 0.3), np.full((32, 32), 0.6)) == pytest.approx(want)
  del c2


@pytest.mark.parametrize("period", [4.0, 8.0, 16.0])
def test_dominant_wavelength_of_stripes(period):
  assert metrics.dominant_wavelength(stripes(period)) == pytest.approx(period, rel=0.15)


@pytest.mark.parametrize("period", [5.0, 10.0, 20.0])
def test_dominant_wavelength_along_rows_of_a_strip(period):
  strip = stripes(period, size=128)[:24]  # 24 rows x 128 columns, stripes varying along the rows
  assert metrics.dominant_wavelength(strip, axis=1) == pytest.approx(period, rel=0.2)
