"""Stylised video (nst_jax/methods/video): the temporal image term of the objective, Gatys over a clip with it,
resuming a stopped clip, one compilation for the frames after the first, and the fast path's consistency pass.
Tiny generated pans (exact flow) and a random VGG16."""

from __future__ import annotations

import collections
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import demo
from nst_jax.errors import NSTError
from nst_jax.io import image_io
from nst_jax.methods import video
from nst_jax.methods.gatys import build_problem
from nst_jax.methods.video import gatys_clip
from nst_jax.models import vgg
from nst_jax.models.preprocessing import CAFFE_VGG
from nst_jax.objective.config import StylizeConfig
from nst_jax.video import measures, reliability, warp
from nst_jax.weights.format import VGGWeights

FRAMES, SIZE, VELOCITY = 4, (32, 40), (2, 1)
CONFIG = StylizeConfig(size=40, iterations=30, content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"),
                       log_every=10, stall_rtol=None)
# The random network's style loss is ~1e3 after a few steps and the temporal loss a mean of squared differences
# (~1e-2): this weight makes them comparable.
TEMPORAL_WEIGHT = 1e6
_COMPILES: collections.Counter = collections.Counter()
jax.monitoring.register_event_duration_secs_listener(
    lambda name, *_, **__: _COMPILES.update([name]) if name == "/jax/core/compile/backend_compile_duration" else None)


@pytest.fixture(scope="module")
def weights():
  return VGGWeights("vgg16", vgg.random_params("vgg16", seed=3), CAFFE_VGG, "random", "0" * 64)


@pytest.fixture(scope="module")
def pan():
  """(frames, exact flows {1: (forward, backward)}, masks [T-1, H, W], style)."""
  photo = image_io.resize_long_side(demo.default_content(), 64)
  frames, velocity = demo.camera_pan(photo, frames=FRAMES, size=SIZE, velocity=VELOCITY)
  backward = np.broadcast_to(-velocity, (FRAMES - 1, *SIZE, 2)).astype(np.float32)
  masks = np.asarray(reliability.clip_reliability(-backward, backward))
  flows = {j: (-j * backward[:FRAMES - j], j * backward[:FRAMES - j]) for j in (1, 2)}
  return frames, flows, masks, image_io.resize_long_side(demo.default_style(), 48)


def test_temporal_term_is_zero_on_the_warped_predecessor_and_its_gradient_matches_finite_differences(weights, pan):
  frames, flows, _, style = pan
  config = dataclasses.replace(CONFIG, temporal_weight=2.0)
  guides = gatys_clip.temporal_guides([frames[0], frames[1]], 2, (1, 2), flows)
  assert guides["temporal_masks"].shape == (2, *SIZE) and guides["temporal_masks"].mean() > 0.8
  problem = build_problem(content=frames[2], styles=[style], weights=weights, config=config, guides=guides)
  term = lambda x: problem.terms_fn(x, problem.inputs)["temporal"]  # noqa: E731
  assert float(term(jnp.asarray(frames[2]))) == 0.0  # the pan is exact where the masks are 1
  rng = np.random.default_rng(0)
  x = frames[2] + rng.normal(0, 0.1, frames[2].shape).astype(np.float32)
  # Independent reference: the weighted masked means written out in NumPy (long-term masks: nearest first).
  c1, c2 = guides["temporal_masks"]
  c2 = np.maximum(c2 - c1, 0)
  reference = lambda y: 2.0 * sum(np.mean(c[..., None] * (y - w) ** 2)  # noqa: E731
                                  for c, w in zip((c1, c2), guides["temporal_previous"].astype(np.float64)))
  np.testing.assert_allclose(float(term(jnp.asarray(x))), reference(x.astype(np.float64)), rtol=1e-5)
  grad = np.asarray(jax.grad(term)(jnp.asarray(x)))
  for index in zip(*(rng.integers(0, n, 12) for n in x.shape)):
    plus, minus = x.astype(np.float64), x.astype(np.float64)
    plus[index] += 1e-3
    minus[index] -= 1e-3
    np.testing.assert_allclose(grad[index], (reference(plus) - reference(minus)) / 2e-3, rtol=1e-3, atol=1e-9)


def test_temporal_weight_without_guides_is_one_line(weights, pan):
  frames, _, _, style = pan
  with pytest.raises(NSTError, match="temporal_weight needs the earlier frames"):
    build_problem(content=frames[0], styles=[style], weights=weights,
                  config=dataclasses.replace(CONFIG, temporal_weight=1.0))


@pytest.fixture(scope="module")
def clips(weights, pan):
  """Per-frame Gatys and Gatys with the temporal term and warm starts, at the same iterations; frames ≥ 2's
  compilations counted."""
  frames, flows, _, style = pan
  per_frame, _ = video.stylize_clip(frames, styles=[style], weights=weights, config=CONFIG,
                                    settings=video.ClipSettings(warm_start=False), flows=flows)
  counts = []
  stable, _ = video.stylize_clip(
      frames, styles=[style], weights=weights, config=dataclasses.replace(CONFIG, temporal_weight=TEMPORAL_WEIGHT),
      settings=video.ClipSettings(temporal_frames=(1, 2)), flows=flows,
      on_frame=lambda t, image: counts.append(_COMPILES["/jax/core/compile/backend_compile_duration"]))
  return per_frame, stable, counts


def test_temporal_term_cuts_the_warping_error(pan, clips):
  frames, flows, masks, _ = pan
  per_frame, stable, _ = clips
  content_error = measures.warping_error(frames, flows[1][1], masks)
  per_frame_error = measures.warping_error(per_frame, flows[1][1], masks)
  stable_error = measures.warping_error(stable, flows[1][1], masks)
  assert content_error < 1e-6  # integer pan: warping is exact
  assert stable_error < 0.3 * per_frame_error, (stable_error, per_frame_error)


def test_frames_after_the_second_compile_nothing(clips):
  counts = clips[2]
  # frame 0 (no temporal term) and frame 1 (with it) compile; frames 2 and 3 reuse frame 1's programs
  assert counts[1] > counts[0]
  assert counts[3] == counts[2] == counts[1], counts


def test_second_frame_starts_from_the_warped_first_result_where_reliable(weights, pan, monkeypatch):
  frames, flows, _, style = pan
  starts = []
  original = gatys_clip.stylize

  def spy(**kwargs):
    if kwargs.get("start") is not None:
      default = np.full(frames[0].shape, 0.25, np.float32)
      starts.append(kwargs["start"](default))
    return original(**kwargs)

  monkeypatch.setattr(gatys_clip, "stylize", spy)
  config = dataclasses.replace(CONFIG, iterations=1)
  results, _ = video.stylize_clip(frames[:2], styles=[style], weights=weights, config=config, flows=flows)
  mask = np.asarray(reliability.reliability(flows[1][1][0], flows[1][0][0]))
  expected = np.asarray(warp.warp(results[0], flows[1][1][0]))
  assert 0.7 < mask.mean() < 1
  np.testing.assert_allclose(starts[0][mask == 1], expected[mask == 1], atol=1e-6)
  np.testing.assert_array_equal(starts[0][mask == 0], 0.25)


def test_a_stopped_run_resumes_to_the_same_frames(weights, pan, tmp_path):
  frames, flows, _, style = pan
  config = dataclasses.replace(CONFIG, iterations=5, temporal_weight=TEMPORAL_WEIGHT)
  key = video.run_key([frames, style], config)
  whole, _ = video.stylize_clip(frames, styles=[style], weights=weights, config=config, flows=flows)

  def stop_after_second(t, image):
    if t == 1:
      raise KeyboardInterrupt

  state = video.ClipState(tmp_path / "state", key=key)
  with pytest.raises(KeyboardInterrupt):
    video.stylize_clip(frames, styles=[style], weights=weights, config=config, state=state, flows=flows,
                       on_frame=stop_after_second)
  assert sorted(p.name for p in state.folder.glob("frame_*.png")) == ["frame_00001.png", "frame_00002.png"]
  resumed, seconds = video.stylize_clip(frames, styles=[style], weights=weights, config=config, flows=flows,
                                        state=video.ClipState(tmp_path / "state", key=key))
  assert seconds[:2] == [0.0, 0.0] and min(seconds[2:]) > 0
  np.testing.assert_array_equal(resumed, whole)
  with pytest.raises(NSTError, match="another run"):
    video.ClipState(tmp_path / "state", key="other")


def test_fast_path_with_the_consistency_pass_has_a_lower_warping_error(pan):
  frames, flows, masks, _ = pan
  # A per-frame method that flickers: a gain and offset drawn per frame (what an unstable method does to a pan).
  rng = np.random.default_rng(0)
  flicker = iter(zip(rng.uniform(0.7, 1.3, FRAMES), rng.uniform(-0.05, 0.05, FRAMES)))
  stylized, seconds = video.stylize_frames(frames, lambda f: (lambda g, o: np.clip(g * f + o, 0, 1))(*next(flicker)))
  assert stylized.shape == frames.shape and len(seconds) == FRAMES
  stable = video.stabilize(frames, stylized, flows=flows[1])
  before = measures.warping_error(stylized, flows[1][1], masks)
  after = measures.warping_error(stable, flows[1][1], masks)
  assert after < 0.2 * before, (after, before)


def test_stabilize_refuses_clips_that_do_not_match(pan):
  frames = pan[0]
  with pytest.raises(NSTError, match="does not match"):
    video.stabilize(frames, frames[:2])


def test_clip_settings_refuse_bad_temporal_frames():
  for bad in ((), (0,), (1, 1), (-2,)):
    with pytest.raises(NSTError, match="--temporal_frames"):
      video.ClipSettings(temporal_frames=bad)
  assert video.ClipSettings(temporal_frames=(4, 1, 2)).temporal_frames == (1, 2, 4)
