"""Octave style layers (`relu2_1@4`): names, antialiased downsampling, guides that fit the features, and Gatys
style transfer that matches them (real default weights, 48-64 px)."""

import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import demo
from nst_jax.errors import NSTError
from nst_jax.highres import highres_config
from nst_jax.losses import guidance, octaves
from nst_jax.engines import optimize
from nst_jax.methods import gatys
from nst_jax.objective.config import StylizeConfig, check_request
from nst_jax.objective.plan import resolve_plan
from nst_jax.models import vgg


def test_names_split_and_join():
  assert octaves.split("relu2_1@4") == ("relu2_1", 4)
  assert octaves.split("relu2_1") == ("relu2_1", 1)
  assert octaves.name("relu2_1", 4) == "relu2_1@4" and octaves.name("relu2_1", 1) == "relu2_1"
  names = ("relu1_1", "relu2_1", "relu1_1@4", "relu2_1@2", "relu1_1@2")
  assert octaves.factors(names) == (2, 4)
  assert octaves.octave_layers(names) == ("relu1_1@4", "relu2_1@2", "relu1_1@2")
  assert octaves.at_factor(names, 1) == ("relu1_1", "relu2_1")
  assert octaves.at_factor(names, 2) == ("relu2_1", "relu1_1")
  for bad in ("relu2_1@1", "relu2_1@x", "relu2_1@", "relu2_1@32"):
    with pytest.raises(ValueError, match="factor"):
      octaves.split(bad)
  with pytest.raises(ValueError, match="no layer 'relu9_1'"):
    octaves.check_layers("vgg16", ["relu1_1@2", "relu9_1@2"])


def test_downsampling_is_antialiased_and_keeps_the_mean():
  """A 1-px checkerboard has nothing at the half-resolution grid's frequencies: antialiased, it becomes its mean
  (plain subsampling would keep one colour of the checkerboard); a smooth ramp keeps its values."""
  y, x = np.mgrid[:64, :48]
  checker = ((x + y) % 2).astype(np.float32)[..., None].repeat(3, axis=-1)
  small = np.asarray(octaves.downsample(jnp.asarray(checker), 2))
  assert small.shape == (32, 24, 3)
  np.testing.assert_allclose(small[2:-2, 2:-2], 0.5, atol=1e-6)
  ramp = (x / 47.0).astype(np.float32)[..., None].repeat(3, axis=-1)
  small = np.asarray(octaves.downsample(jnp.asarray(ramp), 4))
  np.testing.assert_allclose(small.mean(), ramp.mean(), atol=1e-3)
  assert np.all(np.diff(small[5, 1:-1, 0]) > 0)
  assert octaves.downsample(jnp.asarray(ramp), 1) is not None and octaves.downsample(ramp, 1) is ramp


def test_guides_have_the_shape_of_the_features_they_weight():
  """Every octave layer's guide matches its features (the guided Gram multiplies them elementwise), for sizes
  that do not divide evenly."""
  names = ("relu1_1", "relu2_1@2", "relu1_1@4", "relu2_1@3")
  bases = ("relu1_1", "relu2_1")
  model = vgg.VGG("vgg16", bases)
  params = vgg.params_for("vgg16", vgg.random_params("vgg16"), bases)
  image = jnp.asarray(np.random.default_rng(0).random((45, 70, 3)), jnp.float32)
  feats = octaves.features(lambda img, layers: model.apply({"params": params}, img[None]), image, names)
  masks = jnp.ones((2, 45, 70), jnp.float32)
  guides = octaves.guides_at_layers(
      lambda m, layers: guidance.masks_at_layers("vgg16", m, layers), masks, names)
  assert set(feats) == set(guides) == set(names)
  for entry in names:
    assert guides[entry].shape[1:] == feats[entry].shape[1:3], entry
  assert feats["relu2_1@2"].shape[1:3] == (11, 17)  # 45x70 -> 22x35 -> pooled once


@pytest.fixture(scope="module")
def pair():
  return demo.default_content(), demo.default_style()


def initial_style(weights, content, style, **overrides) -> float:
  config = StylizeConfig(**{"size": 64, "init": "content", "init_noise": 0.0, **overrides})
  problem = gatys.build_problem(content=content, styles=[style], weights=weights, config=config)
  return float(optimize.jitted_terms(problem.terms_fn)(jnp.asarray(problem.x0), problem.inputs)["style"])


def test_the_style_image_itself_meets_its_octave_targets(default_weights, pair):
  """Started from the style image as content (same size), every octave term is zero: the target is taken of the
  style downsampled exactly as the image is. A different image is far from them."""
  content, style = pair
  style = style[:96, :128]
  layers = ("relu1_1@2", "relu2_1@4")
  assert initial_style(default_weights, style, style, style_layers=layers) < 1e-6 * initial_style(
      default_weights, content, style, style_layers=layers)
  # Two regions that both cover the whole image (guided Gram matrices, guides carried to the octave): zero too.
  mask = np.ones(style.shape[:2], np.float32)
  config = StylizeConfig(size=64, init="content", init_noise=0.0, style_layers=("relu1_1", "relu2_1@2"))
  problem = gatys.build_problem(content=style, styles=[style, style], weights=default_weights, config=config,
                                style_masks=[mask, mask])
  guided = float(optimize.jitted_terms(problem.terms_fn)(jnp.asarray(problem.x0), problem.inputs)["style"])
  assert guided < 1e-6 * initial_style(default_weights, content, style, style_layers=("relu1_1", "relu2_1@2"))


def test_octave_layers_are_optimised(default_weights, pair):
  content, style = pair
  config = StylizeConfig(size=64, iterations=30, style_layers=("relu1_1", "relu1_1@2", "relu2_1@4"), log_every=100)
  result = gatys.stylize(content=content, styles=[style], weights=default_weights, config=config, progress=False)
  assert result.final_terms["style"] < 0.1 * result.initial_terms["style"]


def test_octave_layers_are_refused_where_they_are_not_supported(default_weights, pair):
  content, style = pair
  with pytest.raises(NSTError, match="StylizeConfig.style_layers: .*factor"):
    check_request(StylizeConfig(style_layers=("relu2_1@1",)), "vgg16")
  with pytest.raises(NSTError, match="StylizeConfig.style_layer_weights: .*no layer"):
    check_request(StylizeConfig(style_layer_weights={"relu9_1@2": 1.0}), "vgg16")
  with pytest.raises(NSTError, match="gram style loss"):
    gatys.build_problem(content=content, styles=[style], weights=default_weights,
                        config=StylizeConfig(size=32, style_loss="swd", style_layers=("relu1_1@2",)))
  with pytest.raises(NSTError, match="high-resolution engine"):
    highres_config.check_highres_request(highres_config.HighresConfig(),
                                         resolve_plan(StylizeConfig(style_layers=("relu1_1", "relu1_1@2")),
                                                      arch="vgg16"))
