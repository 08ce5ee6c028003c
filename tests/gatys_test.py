"""Gatys style transfer end to end: real default weights, tiny images, one compilation per module."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import demo, metrics, optim
from nst_jax.io import image_io
from nst_jax.losses import color
from nst_jax.methods import gatys
from nst_jax.objective import images
from nst_jax.engines.optimize import NonFiniteLossError, SummedTerms, optimize_image, STALL_WINDOW, stalled
from nst_jax.objective.config import StylizeConfig, make_optimizer, start_kind, start_noise
from nst_jax.errors import NSTError
from nst_jax.models.preprocessing import CAFFE_VGG
from nst_jax.weights.format import VGGWeights

from vgg_test import random_params


@pytest.fixture(scope="module")
def demo_pair():
  return demo.default_content(), demo.default_style()


@pytest.fixture(scope="module")
def random_weights():
  return VGGWeights(arch="vgg16", params=random_params("vgg16"), preprocessing=CAFFE_VGG, source="test",
                    source_sha256="0" * 64, extras={})


def test_real_weights_stylize_64px_lowers_style_loss_tenfold(default_weights, demo_pair):
  content, style = demo_pair
  config = StylizeConfig(size=64, iterations=50, log_every=25)
  result = gatys.stylize(content=content, styles=style, weights=default_weights, config=config, progress=False)
  assert result.image.shape[:2] == image_io.long_side_shape(content.shape, 64)
  assert np.all(np.isfinite(result.image)) and result.image.min() >= 0 and result.image.max() <= 1
  assert result.final_terms["style"] * 10 <= result.initial_terms["style"], (result.initial_terms,
                                                                             result.final_terms)
  assert result.loss_history.shape == (50,)
  # The image moved away from the content towards the style but kept content structure (content loss finite).
  assert np.abs(result.image - image_io.resize_long_side(content, 64)).mean() > 0.02


def test_runs_that_differ_in_weights_and_length_share_one_compiled_loop(random_weights, demo_pair):
  """The loss weights are inputs, not constants of the program: runs whose settings differ only in weights and
  iteration count build equal loss terms and reuse one compiled optimisation loop, and the weights still act
  (the initial terms of the same start scale with them)."""
  content, style = demo_pair
  base = StylizeConfig(size=32, iterations=3, log_every=10)
  other = dataclasses.replace(base, iterations=5, style_weight=100.0, content_weight=0.5, tv_weight=1.0)
  problems = [gatys.build_problem(content=content, styles=style, weights=random_weights, config=c)
              for c in (base, other)]
  assert problems[0].terms_fn == problems[1].terms_fn and hash(problems[0].terms_fn) == hash(problems[1].terms_fn)
  assert problems[0].terms_fn != gatys.build_problem(content=content, styles=style, weights=random_weights,
                                                     config=dataclasses.replace(base, range_weight=1.0)).terms_fn
  results = [gatys.stylize(content=content, styles=style, weights=random_weights, config=c, progress=False)
             for c in (base, other)]
  for term, ratio in (("style", 10.0), ("content", 0.5), ("tv", 0.1)):
    assert results[1].initial_terms[term] == pytest.approx(ratio * results[0].initial_terms[term], rel=1e-5)
  runner = optim.make_chunk_runner(SummedTerms(problems[0].terms_fn), make_optimizer(base), chunk_size=10,
                                   reuse_linesearch_value=False, with_terms=True)  # as `optimize_image` asks
  assert runner._cache_size() == 1 and len(results[1].loss_history) == 5


def test_intermediate_images_arrive_on_schedule(random_weights, demo_pair):
  content, style = demo_pair
  seen = []
  config = StylizeConfig(size=32, iterations=6, save_every=2, log_every=4, optimizer="adam",
                         init="noise", style_weight=1e-3, content_weight=1e-3, tv_weight=1.0)
  result = gatys.stylize(content=content, styles=style, weights=random_weights, config=config,
                         on_intermediate=lambda i, img: seen.append((i, img.shape)), progress=False)
  assert [i for i, _ in seen] == [2, 4]  # the final image is the result, not an intermediate
  assert all(shape == result.image.shape for _, shape in seen)
  assert result.loss_history[-1] < result.loss_history[0]


def test_divergence_is_detected_and_last_finite_image_kept(random_weights, demo_pair):
  content, style = demo_pair
  config = StylizeConfig(size=32, iterations=4, optimizer="sgd", learning_rate=1e30, log_every=1)
  with pytest.raises(NonFiniteLossError) as info:
    gatys.stylize(content=content, styles=style, weights=random_weights, config=config, progress=False)
  assert np.all(np.isfinite(info.value.last_good_image))
  assert info.value.last_good_image.shape[:2] == image_io.long_side_shape(content.shape, 32)


def test_stalled_is_a_relative_decrease_over_the_window():
  falling = 100.0 * 0.99 ** np.arange(30)
  assert not stalled(falling, rtol=1e-6)
  flat = np.concatenate([falling, np.full(11, falling[-1])])
  assert stalled(flat, rtol=1e-6) and not stalled(flat, rtol=None)
  assert not stalled(flat[:11], rtol=1e-6)  # too short to judge
  creeping = np.concatenate([falling, falling[-1] * (1 - 1e-7 * np.arange(1, 12))])  # 1e-6 in 10 steps
  assert stalled(creeping, rtol=2e-6) and not stalled(creeping, rtol=5e-7)


def _quadratic_terms(x, inputs):
  return {"quadratic": jnp.sum(inputs["scale"] * jnp.square(x - inputs["target"]))}


def test_lbfgs_stops_once_the_loss_stalls_and_adam_does_not():
  rng = np.random.default_rng(0)
  inputs = {"scale": jnp.asarray(rng.uniform(1, 100, (8, 8, 3)), jnp.float32),
            "target": jnp.asarray(rng.uniform(size=(8, 8, 3)), jnp.float32)}
  x0 = jnp.zeros((8, 8, 3), jnp.float32)
  run = optim.RunSettings(iterations=300, log_every=5)
  result = optimize_image(_quadratic_terms, inputs, x0, run=run, progress=False)
  n = len(result.loss_history)
  assert 10 < n < 300 and n % 5 == 0, n  # stopped at a chunk end, well before 300
  assert result.final_terms["quadratic"] < 1e-6 * result.initial_terms["quadratic"]
  tail = result.loss_history[-STALL_WINDOW - 1:]
  assert tail[0] - tail[-1] <= 1e-6 * tail[0]
  full = optimize_image(_quadratic_terms, inputs, x0, run=dataclasses.replace(run, stall_rtol=None),
                        progress=False)
  assert len(full.loss_history) == 300
  adam = dataclasses.replace(run, optimizer="adam", learning_rate=1e-3, iterations=40)
  assert len(optimize_image(_quadratic_terms, inputs, x0, run=adam, progress=False).loss_history) == 40


@pytest.mark.parametrize("init", ["colors", "content", "noise", "style"])
def test_initial_images(init, demo_pair):
  content = image_io.resize_long_side(demo_pair[0], 40)
  x0 = images.initial_image(init, content=content, styles=[demo_pair[1]], seed=3)
  assert x0.shape == content.shape and x0.dtype == np.float32
  if init == "colors":  # the style's colour mean (up to clipping), the content's layout
    style = image_io.resize_long_side(demo_pair[1], 512)
    np.testing.assert_allclose(x0.reshape(-1, 3).mean(0), style.reshape(-1, 3).mean(0), atol=0.02)
    assert np.corrcoef(x0.mean(-1).ravel(), content.mean(-1).ravel())[0, 1] > 0.5
    assert np.abs(x0.reshape(-1, 3).mean(0) - content.reshape(-1, 3).mean(0)).max() > 0.05
  if init == "content":
    np.testing.assert_array_equal(x0, content)
  if init == "noise":
    np.testing.assert_array_equal(x0, images.initial_image(init, content=content, styles=[demo_pair[1]], seed=3))
    assert 0.45 < x0.mean() < 0.55


def test_colors_start_follows_the_blend_and_yields_to_preserved_colors(demo_pair):
  content = image_io.resize_long_side(demo_pair[0], 40)
  red, blue = np.full((16, 16, 3), 0.3, np.float32), np.full((16, 16, 3), 0.3, np.float32)
  red[..., 0], blue[..., 2] = 0.8, 0.8
  red[::2, :, 0], blue[::2, :, 2] = 0.6, 0.6  # some variance
  x0 = images.initial_image("colors", content=content, styles=[red, blue], seed=0, style_weights=(0.75, 0.25))
  np.testing.assert_allclose(x0.reshape(-1, 3).mean(0), [0.6, 0.3, 0.4], atol=0.02)  # the 3:1 mixture's
  white = images.initial_image("noise", content=content, styles=[red], seed=5)
  for init in ("colors", "content"):
    plain = images.initial_image(init, content=content, styles=[red], seed=5)
    blended = images.initial_image(init, content=content, styles=[red], seed=5, noise=0.1)
    np.testing.assert_allclose(blended, 0.9 * plain + 0.1 * white, atol=1e-6)
  assert start_kind(StylizeConfig()) == "colors"
  assert start_kind(StylizeConfig(preserve_colors="luminance")) == "content"
  assert start_kind(StylizeConfig(preserve_colors="histogram")) == "content"
  assert start_noise(StylizeConfig()) == 0.2 and start_noise(StylizeConfig(preserve_colors="luminance")) == 0.3
  assert start_noise(StylizeConfig(preserve_colors="luminance", init_noise=0.0)) == 0.0


def test_start_colors_distribution_reaches_the_start(random_weights, demo_pair):
  """`StylizeConfig.start_colors` reaches the start that `build_problem` makes: 'distribution' gives a start whose
  palette is much closer to the painting's than the moments' start, with the same layout."""
  content, style = demo_pair
  starts = {}
  for method in color.START_COLOR_METHODS:
    config = StylizeConfig(size=40, style_layers=("relu1_1",), content_layers=("relu1_2",), init_noise=0.0,
                           start_colors=method)
    starts[method] = gatys.build_problem(content=content, styles=[style], weights=random_weights,
                                         config=config).x0
  small_style = image_io.resize_long_side(style, 512)
  distances = {m: metrics.palette_distance(x0, small_style) for m, x0 in starts.items()}
  assert distances["distribution"] < 0.5 * distances["moments"], distances
  assert np.corrcoef(starts["distribution"].mean(-1).ravel(), starts["moments"].mean(-1).ravel())[0, 1] > 0.7


def test_bad_layer_names_and_sizes_are_clear_errors(random_weights, demo_pair):
  content, style = demo_pair
  # Settings that are wrong on their own are refused when the config is made (`StylizeConfig.__post_init__`); the
  # rest (layer names of the architecture, memory for the size) when stylize looks at the weights.
  for settings, message in [
      (dict(style_layers=("relu9_9",)), "StylizeConfig.style_layers: vgg16 has no layer 'relu9_9'"),
      (dict(content_layers=("conv5_4",)), "StylizeConfig.content_layers: vgg16 has no layer 'conv5_4'"),
      (dict(iterations=0), "StylizeConfig.iterations"),
      (dict(size=8), "StylizeConfig.size"),
      (dict(init_noise=1.5), "StylizeConfig.init_noise must lie in"),
      (dict(start_colors="histogram"), "StylizeConfig.start_colors must be one of"),
      (dict(size=1_000_000), "GiB"),
  ]:
    with pytest.raises(NSTError, match=message):
      gatys.stylize(content=content, styles=style, weights=random_weights, config=StylizeConfig(**settings),
                    progress=False)
