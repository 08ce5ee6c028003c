"""Warping, optical flow and its reliability (nst_jax/video/): a known shift against slicing and SciPy's bilinear
sampler, DIS on a synthetic camera pan against the pan's exact flow, Ruder et al.'s mask against a NumPy port of
its rule and against the strip a pan uncovers, and the flow cache."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy import ndimage

from nst_jax import demo
from nst_jax.errors import NSTError
from nst_jax.io import checkpoint
from nst_jax.video import flow, reliability, warp

pytest.importorskip("cv2")

VELOCITY = (1.7, -0.6)  # px per frame: a sub-pixel pan, right and up


@pytest.fixture(scope="module")
def pan():
  """(frames [4, 64, 64, 3] of a pan over the demo photo, its exact forward flow (dx, dy))."""
  return demo.camera_pan(demo.default_content(), frames=4, size=(64, 64), velocity=VELOCITY)


def scipy_warp(image: np.ndarray, field: np.ndarray) -> np.ndarray:
  h, w = image.shape[:2]
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
  coords = [ys + field[..., 1], xs + field[..., 0]]
  return np.stack([ndimage.map_coordinates(image[..., c].astype(np.float64), coords, order=1, mode="nearest")
                   for c in range(image.shape[-1])], -1)


def test_warping_by_an_integer_shift_equals_the_shifted_image():
  image = np.random.default_rng(0).uniform(0, 1, (20, 24, 3)).astype(np.float32)
  field = np.broadcast_to(np.array([3.0, -2.0], np.float32), (20, 24, 2))
  out = np.asarray(warp.warp(image, field))
  # out[y, x] = image[y - 2, x + 3] wherever that is inside; outside, the edge pixel repeats
  np.testing.assert_array_equal(out[2:, :-3], image[:-2, 3:])
  np.testing.assert_array_equal(out[:2, :-3], np.broadcast_to(image[:1, 3:], (2, 21, 3)))
  np.testing.assert_array_equal(out[2:, -3:], np.broadcast_to(image[:-2, -1:], (18, 3, 3)))


def test_warping_by_any_flow_matches_scipy_bilinear_sampling():
  rng = np.random.default_rng(1)
  image = rng.uniform(0, 1, (17, 23, 3)).astype(np.float32)
  field = rng.uniform(-6, 6, (17, 23, 2)).astype(np.float32)  # sub-pixel, some positions outside the image
  field[0, 0] = [0.0, 0.0]
  field[-1, -1] = [0.0, 0.0]  # exactly on the last row and column
  np.testing.assert_allclose(np.asarray(warp.warp(image, field)), scipy_warp(image, field), atol=2e-6)


def test_cubic_warping_is_exact_on_integer_shifts_and_quadratics():
  """Keys's kernel interpolates (integer shifts are slicing) and reproduces polynomials of degree 2 at any
  sub-pixel position whose 4x4 neighbourhood is inside the image."""
  rng = np.random.default_rng(2)
  image = rng.uniform(0, 1, (20, 24, 3)).astype(np.float32)
  field = np.broadcast_to(np.array([3.0, -2.0], np.float32), (20, 24, 2))
  np.testing.assert_allclose(np.asarray(warp.warp_cubic(image, field))[2:, :-3], image[:-2, 3:], atol=1e-6)
  ys, xs = np.mgrid[0:20, 0:24].astype(np.float64)
  quadratic = lambda y, x: 0.3 + 0.02 * x - 0.01 * y + 1e-3 * x * x - 2e-3 * x * y + 1.5e-3 * y * y  # noqa: E731
  field = rng.uniform(-1.5, 1.5, (20, 24, 2)).astype(np.float32)
  out = np.asarray(warp.warp_cubic(quadratic(ys, xs)[..., None].astype(np.float32), field))[..., 0]
  inner = (slice(3, -3), slice(3, -3))
  np.testing.assert_allclose(out[inner], quadratic(ys + field[..., 1], xs + field[..., 0])[inner], atol=2e-5)


def test_a_half_pixel_shift_keeps_the_cubic_kernels_response_where_bilinear_blurs():
  """A 4-pixel-period cosine moved by half a pixel keeps cos(pi/4) = 0.707 of its amplitude under bilinear sampling
  and 2 (9/16 cos(pi/4) + 1/16 cos(3 pi/4)) = 0.884 under the cubic kernel (its weights -1/16, 9/16, 9/16, -1/16)."""
  xs = np.arange(32, dtype=np.float64)
  image = np.broadcast_to(np.cos(np.pi / 2 * xs)[None, :, None], (8, 32, 1)).astype(np.float32)
  field = np.broadcast_to(np.array([0.5, 0.0], np.float32), (8, 32, 2))
  want = np.cos(np.pi / 2 * (xs + 0.5))[4:-4]
  for sampler, gain in ((warp.warp, np.cos(np.pi / 4)), (warp.warp_cubic, 2 * (9 / 16 + 1 / 16) * np.cos(np.pi / 4))):
    np.testing.assert_allclose(np.asarray(sampler(image, field))[4, 4:-4, 0], gain * want, atol=1e-5)


@pytest.mark.parametrize("preset", ["medium", "fine"])
def test_dis_recovers_a_sub_pixel_pan_to_half_a_pixel(pan, preset):
  frames, exact = pan
  forward, backward = flow.clip_flows(frames, preset=preset)
  assert forward.shape == backward.shape == (3, 64, 64, 2)
  # Away from the strip the camera uncovers (2 px at the right, 1 at the top, plus a margin)
  inner = (slice(None), slice(3, -3), slice(3, -4))
  error_forward = np.linalg.norm(forward - exact, axis=-1)[inner]
  error_backward = np.linalg.norm(backward + exact, axis=-1)[inner]
  assert error_forward.max() < 0.5 and error_backward.max() < 0.5
  assert error_forward.mean() < 0.1 and error_backward.mean() < 0.1
  # What long-term terms use, frame t -> t+2: twice the motion, so a 5 px margin (strip and border)
  two_steps = flow.pair_flow(frames[0], frames[2], preset=preset)
  assert np.linalg.norm(two_steps - 2 * exact, axis=-1)[5:-5, 5:-5].max() < 0.5


def ruder_reference(warping: np.ndarray, reverse: np.ndarray) -> np.ndarray:
  """Ruder et al.'s rule pixel by pixel, the way their consistencyChecker reads (bilinear lookup of the reverse
  flow, central differences), with edges counted as inside."""
  h, w = warping.shape[:2]
  gx = np.gradient(np.pad(warping, ((0, 0), (1, 1), (0, 0)), mode="edge"), axis=1)[:, 1:-1]
  gy = np.gradient(np.pad(warping, ((1, 1), (0, 0), (0, 0)), mode="edge"), axis=0)[1:-1]
  mask = np.ones((h, w), np.float32)
  for y in range(h):
    for x in range(w):
      u, v = warping[y, x]
      bx, by = x + u, y + v
      if not (0 <= bx <= w - 1 and 0 <= by <= h - 1):
        mask[y, x] = 0
        continue
      ru, rv = (ndimage.map_coordinates(reverse[..., c].astype(np.float64), [[by], [bx]], order=1)[0]
                for c in (0, 1))
      if (u + ru) ** 2 + (v + rv) ** 2 > 0.01 * (u * u + v * v + ru * ru + rv * rv) + 0.5:
        mask[y, x] = 0
      elif (gx[y, x] ** 2).sum() + (gy[y, x] ** 2).sum() > 0.01 * (u * u + v * v) + 0.002:
        mask[y, x] = 0
  return mask


def moving_square(size: int = 24, step: int = 4):
  """Flows of a square moving right by `step` px over a still background: (forward t -> t+1, backward t+1 -> t,
  the pixels of frame t+1 that the square uncovered)."""
  forward = np.zeros((size, size, 2), np.float32)
  backward = np.zeros((size, size, 2), np.float32)
  forward[8:16, 4:12, 0] = step  # the square in frame t
  backward[8:16, 4 + step:12 + step, 0] = -step  # the square in frame t+1
  uncovered = np.zeros((size, size), bool)
  uncovered[8:16, 4:4 + step] = True
  return forward, backward, uncovered


def test_reliability_follows_ruder_et_al_rule_pixel_by_pixel():
  forward, backward, uncovered = moving_square()
  mask = np.asarray(reliability.reliability(backward, forward))
  np.testing.assert_array_equal(mask, ruder_reference(backward, forward))
  assert (mask[uncovered] == 0).all()  # the disocclusion, found by the forward-backward check
  assert mask[~uncovered].mean() > 0.7  # elsewhere only the square's outline (motion boundary) is lost
  rng = np.random.default_rng(2)
  smooth = ndimage.gaussian_filter(rng.normal(0, 12, (20, 20, 2)), (3, 3, 0)).astype(np.float32)
  noisy = (-smooth + rng.normal(0, 0.4, smooth.shape)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(reliability.reliability(smooth, noisy)), ruder_reference(smooth, noisy))


def test_the_mask_flags_the_strip_a_pan_uncovers(pan):
  frames, exact = pan
  forward, backward = flow.clip_flows(frames)
  masks = np.asarray(reliability.clip_reliability(forward, backward))
  # The camera moves 1.7 px right and 0.6 px up: frame t+1's last 2 columns and first row are new
  new = np.zeros((64, 64), bool)
  new[:, 64 - 2:] = True
  new[:1, :] = True
  for mask in masks:
    assert (mask[new] == 0).all()
    assert mask[~new].mean() > 0.95
  exact_masks = np.asarray(reliability.clip_reliability(np.broadcast_to(exact, forward.shape),
                                                        np.broadcast_to(-exact, backward.shape)))
  np.testing.assert_array_equal(exact_masks[0] == 0, new)  # the exact flow: exactly that strip


def test_flows_are_cached_by_content_and_settings(pan, tmp_path, monkeypatch):
  frames = pan[0][:2]
  first = flow.cached_clip_flows(frames, cache_dir=tmp_path, preset="medium")
  files = sorted(tmp_path.iterdir())
  assert len(files) == 1
  meta, arrays = checkpoint.read(files[0], what="flow cache")
  assert meta["format"] == "nst_jax-video-flows" and meta["preset"] == "medium"
  np.testing.assert_array_equal(arrays["forward"], first[0])

  def no_computing(*args, **kwargs):
    raise AssertionError("computed again")

  with monkeypatch.context() as patch:
    patch.setattr(flow, "clip_flows", no_computing)
    again = flow.cached_clip_flows(frames, cache_dir=tmp_path, preset="medium")
  np.testing.assert_array_equal(again[0], first[0])
  np.testing.assert_array_equal(again[1], first[1])
  flow.cached_clip_flows(frames, cache_dir=tmp_path, preset="fast")  # other settings: another file
  flow.cached_clip_flows(frames[::-1], cache_dir=tmp_path, preset="medium")  # other frames: another file
  assert len(list(tmp_path.iterdir())) == 3
  files[0].write_bytes(b"PK\x03\x04 damaged")
  repaired = flow.cached_clip_flows(frames, cache_dir=tmp_path, preset="medium")
  np.testing.assert_array_equal(repaired[0], first[0])
  assert checkpoint.read(files[0], what="flow cache")[0]["preset"] == "medium"


def test_one_frame_has_no_flow_and_bad_settings_are_one_line(pan, monkeypatch):
  forward, backward = flow.clip_flows(pan[0][:1])
  assert forward.shape == backward.shape == (0, 64, 64, 2)
  with pytest.raises(NSTError, match="unknown flow preset 'slow'; use one of fast, medium, fine"):
    flow.clip_flows(pan[0], preset="slow")
  monkeypatch.setitem(sys.modules, "cv2", None)
  with pytest.raises(NSTError, match=r"pip install 'nst_jax\[video\]'"):
    flow.clip_flows(pan[0])
