"""Clip-wide content statistics for the fast video paths (WCT `stylize_clip`, AdaIN `stylize_clip`): the moments
are those of all frames together, a clip of one repeated frame gets the per-frame result, and on a still shot where
one part flickers the rest of the picture stays still, where each frame's own statistics move it."""

from __future__ import annotations

import numpy as np
import pytest
from adain_helpers import decoder_checkpoint

from nst_jax import demo
from nst_jax.methods import blend_tiles
from nst_jax.methods.adain import ops as adain_ops, stylize as adain
from nst_jax.methods.wct import ops, stylize as wct
from nst_jax.models import vgg, wct_decoder
from nst_jax.models.preprocessing import CAFFE_VGG
from nst_jax.video import measures
from nst_jax.weights.format import VGGWeights

FRAMES, SIZE = 4, (48, 128)


@pytest.fixture(scope="module")
def weights():
  return VGGWeights("vgg16", vgg.random_params("vgg16", seed=3), CAFFE_VGG, "random", "0" * 64)


@pytest.fixture(scope="module")
def wct_model(weights):
  levels = ("relu2_1", "relu1_1")  # well-conditioned covariances at 40x48 (relu3_1 has 256 channels, 120 positions)
  decoders = wct_decoder.DecoderSet(
      {layer: wct_decoder.LevelDecoder(wct_decoder.init_decoder("vgg16", layer, 4, seed=i), 4, "reflect", 0.01,
                                       {"step": i}) for i, layer in enumerate(levels)},
      "vgg16", weights.source_sha256, weights.source, {"note": "test"})
  return wct.make_model(weights, decoders)


@pytest.fixture(scope="module")
def adain_model(weights):
  return adain.make_model(weights, decoder_checkpoint(weights))


@pytest.fixture(scope="module")
def style():
  return np.random.default_rng(7).random((40, 40, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def shot():
  """(a still shot (`demo.camera_pan` at rest) whose left 16 columns take a new gain every frame, like a flickering
  light; zero flows; masks of the columns beyond the reach of the encoder and decoder, 64 px, from the flicker).

  A still camera isolates the statistics: on a moving pan of this size the random networks' zero-padded borders
  reach every pixel, so neither way of normalising is shift-equivariant there."""
  frames, _ = demo.camera_pan(demo.default_content(), frames=FRAMES, size=SIZE, velocity=(0.0, 0.0))
  gains = np.random.default_rng(1).uniform(0.2, 1.0, FRAMES)
  frames = frames.copy()
  frames[:, :, :16] *= gains[:, None, None, None]
  backward = np.zeros((FRAMES - 1, *SIZE, 2), np.float32)
  masks = np.zeros((FRAMES - 1, *SIZE), np.float32)
  masks[:, :, 80:] = 1
  return frames.astype(np.float32), backward, masks


def test_window_bounds_centre_each_frame_inside_the_clip():
  assert [blend_tiles.window_bounds(t, 5, 3) for t in range(5)] == [(0, 3), (0, 3), (1, 4), (2, 5), (2, 5)]
  assert blend_tiles.window_bounds(2, 5, 0) == (0, 5) and blend_tiles.window_bounds(1, 3, 9) == (0, 3)


def test_wct_clip_moments_are_those_of_the_concatenated_frames():
  rng = np.random.default_rng(0)
  parts = [rng.normal(size=(6, 7, 5)).astype(np.float32) * (1 + t) + t for t in range(3)]
  valid = np.ones((6, 7), np.float32)
  got = ops.combine_moments([ops.moment_sums(p, valid) for p in parts])
  x = np.concatenate([p.reshape(-1, 5) for p in parts]).astype(np.float64)
  np.testing.assert_allclose(got.mean, x.mean(axis=0), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got.cov, np.cov(x, rowvar=False), rtol=1e-4, atol=1e-4)


def test_adain_clip_statistics_are_those_of_the_concatenated_frames():
  rng = np.random.default_rng(0)
  parts = [rng.normal(size=(1, 6, 7, 5)).astype(np.float32) * (1 + t) + t for t in range(3)]
  mean, std = adain_ops.pooled_stats([adain_ops.feature_stats(p) for p in parts])
  x = np.concatenate([p.reshape(-1, 5) for p in parts]).astype(np.float64)
  np.testing.assert_allclose(mean.ravel(), x.mean(axis=0), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(std.ravel(), np.sqrt(x.var(axis=0) + adain_ops.EPS), rtol=1e-4)


def test_a_clip_of_one_repeated_frame_gets_the_per_frame_wct(wct_model, style, shot):
  transforms = [wct.style_transforms(wct_model, style)]
  frame = shot[0][1]
  alone = wct.stylize(frame, [], model=wct_model, transforms=transforms)
  # float32 moments inside one program against float64 sums of parts: a few pixels differ by up to 2.5e-3 on some
  # CPUs (the rounding of XLA's fused reductions differs by instruction set), the image as a whole by far less
  one = wct.stylize_clip(frame[None], model=wct_model, transforms=transforms)[0]
  np.testing.assert_allclose(one, alone, atol=5e-3)
  assert np.mean(np.abs(one - alone)) < 1e-4
  # Three copies: the same mean, and the unbiased covariance of 3N positions is 3(N - 1)/(3N - 1) times one frame's
  # (0.9986 at relu2_1's 480 positions).
  clip = wct.stylize_clip(np.stack([frame] * 3), model=wct_model, transforms=transforms)
  for out in clip:
    np.testing.assert_allclose(out, alone, atol=5e-3)
    assert np.mean(np.abs(out - alone)) < 2e-4


def test_a_clip_of_one_repeated_frame_gets_the_per_frame_adain(adain_model, style, shot):
  stats = [adain.style_statistics(adain_model, style)]
  frame = shot[0][1]
  alone = adain.stylize(frame, [], model=adain_model, style_stats=stats)
  clip = adain.stylize_clip(np.stack([frame] * 3), model=adain_model, style_stats=stats)
  for out in clip:
    np.testing.assert_allclose(out, alone, atol=2e-3)


def _pair(run_frame, run_clip, shot) -> tuple[float, float]:
  frames, backward, masks = shot
  per_frame = np.stack([run_frame(f) for f in frames])
  return (measures.warping_error(per_frame, backward, masks),
          measures.warping_error(run_clip(frames), backward, masks))


def test_clip_statistics_keep_wct_still_where_the_content_is(wct_model, style, shot):
  transforms = [wct.style_transforms(wct_model, style)]
  per_frame, clip = _pair(lambda f: wct.stylize(f, [], model=wct_model, transforms=transforms),
                          lambda c: wct.stylize_clip(c, model=wct_model, transforms=transforms), shot)
  assert per_frame > 1e-4 and clip < 0.1 * per_frame, (clip, per_frame)


def test_clip_statistics_keep_adain_still_where_the_content_is(adain_model, style, shot):
  stats = [adain.style_statistics(adain_model, style)]
  per_frame, clip = _pair(lambda f: adain.stylize(f, [], model=adain_model, style_stats=stats),
                          lambda c: adain.stylize_clip(c, model=adain_model, style_stats=stats), shot)
  assert per_frame > 1e-4 and clip < 0.1 * per_frame, (clip, per_frame)
