"""Photorealistic style transfer: the reference objective, a small two-stage run and the post-processing."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import metrics
from nst_jax.io import image_io
from nst_jax.losses import color, guidance, matting, segmentation
from nst_jax.methods import gatys, photoreal
from nst_jax.engines.optimize import optimize_image
from nst_jax.objective.config import run_settings
from nst_jax.models import vgg
from nst_jax.errors import NSTError
from nst_jax.models.preprocessing import CAFFE_VGG
from nst_jax.weights.format import VGGWeights

C = segmentation.COLORS


def two_colour_map(h: int, w: int, split: float, names=("blue", "green")) -> np.ndarray:
  seg = np.empty((h, w, 3), np.float32)
  seg[:, :int(split * w)] = C[names[0]]
  seg[:, int(split * w):] = C[names[1]]
  return seg


def test_objective_equals_the_reference_formulas():
  """Every term of the stage-2 objective against the Torch reference's formulas, evaluated independently: content
  5·MSE(F, P); style sum_l 100 sum_r mean(m_r) MSE(G_r, A_r) with G = (F⊙m)(F⊙m)ᵀ/(C·H·W·mean(m)); TV
  1e-3·½·sum((sΔx)² + (sΔy)²) over the (H−1)(W−1) grid; λ sum_c p_cᵀ L p_c; and our one addition, the range
  penalty 1e6·mean(distance to [0, 1]²)."""
  rng = np.random.default_rng(0)
  weights = VGGWeights(arch="vgg16", params=vgg.random_params("vgg16"), preprocessing=CAFFE_VGG, source="test",
                       source_sha256="0" * 64, extras={})
  content, style = rng.uniform(0, 1, (24, 32, 3)), rng.uniform(0, 1, (20, 24, 3))
  content_seg, style_seg = two_colour_map(25, 33, 0.4), two_colour_map(20, 24, 0.6)  # content map off by one
  config = photoreal.PhotorealConfig(size=32, style_layers=("relu1_1", "relu2_1", "relu3_1"), stage1_iterations=1,
                                     stage2_iterations=1, objective="reference")
  cfg = photoreal.stylize_config(config, stage=2, shape=(24, 32), input_scale=255.0)
  problem = gatys.build_problem(content=content, styles=[style], weights=weights, config=cfg,
                                  content_seg=content_seg, style_seg=style_seg)
  x = rng.uniform(-0.1, 1.1, (24, 32, 3)).astype(np.float32)  # partly outside [0, 1], for the range penalty
  terms = {k: float(v) for k, v in jax.jit(problem.terms_fn)(jnp.asarray(x), problem.inputs).items()}

  model = vgg.VGG("vgg16", ("relu1_1", "relu2_1", "relu3_1", "relu4_2"), pooling="max")
  feats = lambda img: {k: np.asarray(v[0], np.float64) for k, v in model.apply(
      {"params": weights.params}, CAFFE_VGG.apply(jnp.asarray(img, jnp.float32))[None]).items()}
  style_resized = image_io.resize_long_side(style, 32)  # build_problem brings the style to --size
  fx, fc, fs = feats(x), feats(content), feats(style_resized)
  np.testing.assert_allclose(terms["content"], 5 * np.mean((fx["relu4_2"] - fc["relu4_2"]) ** 2), rtol=1e-4)

  def masks(seg, shape):
    labels = segmentation.snap(seg, ["blue", "green"])
    return np.stack([guidance.resize_mask((labels == i).astype(np.float32), *shape) for i in range(2)])

  layers = ("relu1_1", "relu2_1", "relu3_1")
  mc = guidance.masks_at_layers("vgg16", jnp.asarray(masks(content_seg, (24, 32))), layers)
  ms = guidance.masks_at_layers("vgg16", jnp.asarray(masks(style_seg, style_resized.shape[:2])), layers)

  def gram(f, m):
    h, w, c = f.shape
    weighted = f.reshape(h * w, c) * np.asarray(m, np.float64).reshape(h * w, 1)
    return weighted.T @ weighted / (c * h * w * np.mean(m))

  want_style = sum(100 * np.mean(mc[l][r]) * np.mean((gram(fx[l], mc[l][r]) - gram(fs[l], ms[l][r])) ** 2)
                   for l in layers for r in range(2))
  np.testing.assert_allclose(terms["style"], want_style, rtol=1e-3)
  s = 255.0 * x.astype(np.float64)
  dx, dy = s[:-1, :-1] - s[:-1, 1:], s[:-1, :-1] - s[1:, :-1]
  np.testing.assert_allclose(terms["tv"], 1e-3 * 0.5 * np.sum(dx**2 + dy**2), rtol=0.1)  # edges: ~1/W
  outside = np.maximum(-x.astype(np.float64), 0) + np.maximum(x.astype(np.float64) - 1, 0)
  np.testing.assert_allclose(terms["range"], 1e6 * np.mean(outside**2), rtol=1e-4)
  lap = matting.precompute(problem.content)
  np.testing.assert_allclose(terms["matting"], 1e4 * float(matting.matting_energy(image=jnp.asarray(x),
                                                                                    laplacian=lap)), rtol=1e-5)


@pytest.fixture(scope="module")
def photo_pair(content):
  """The 64-px demo photo and a 'style photo' made from it (flipped, warmer, darker), with two-region maps."""
  style = image_io.resize_long_side(np.clip(content[::-1, ::-1] * [1.2, 0.8, 0.6], 0, 1), 64).astype(np.float32)
  h, w = content.shape[:2]
  return dict(content=content, style=style, content_seg=two_colour_map(h, w, 0.5),
              style_seg=two_colour_map(*style.shape[:2], 0.3))


def yardstick(weights, pair):
  """The reference's segmented style loss (as experiments/papers/dpst_examples.py measures it) of an image."""
  shape = pair["content"].shape[:2]
  config = photoreal.PhotorealConfig(size=max(shape), objective="reference", stage1_iterations=1)
  cfg = photoreal.stylize_config(config, stage=1, shape=shape, input_scale=weights.preprocessing.input_scale)
  cfg = dataclasses.replace(cfg, content_weight=0.0, tv_weight=0.0, range_weight=0.0)
  problem = gatys.build_problem(weights=weights, config=cfg, styles=[pair["style"]],
                                **{k: pair[k] for k in ("content", "content_seg", "style_seg")})
  loss = jax.jit(lambda x: problem.terms_fn(x, problem.inputs)["style"])
  return lambda image: float(loss(jnp.asarray(image, jnp.float32)))


def test_colors_init_puts_the_style_palette_on_the_content(default_weights, photo_pair):
  """The default start: each region of the content takes its style region's colour moments, so it starts in the
  style's palette (a far lower style loss than the content's or the reference's near-constant start) while keeping
  the content's structure (an affine colour map per region)."""
  content = photo_pair["content"]
  shape = content.shape[:2]
  x0 = photoreal.colors_init(shape=shape, **photo_pair)
  style_loss = yardstick(default_weights, photo_pair)
  assert style_loss(x0) < 0.4 * style_loss(content)  # measured 0.32
  assert style_loss(x0) < 0.4 * style_loss(photoreal.initial_image(shape, seed=0))  # measured 0.29
  assert metrics.ssim(metrics.gray(x0), metrics.gray(content)) > 0.8
  # Region means: the left half of the content (blue) takes the style's left 30% (blue) mean colour (up to the
  # clipping to [0, 1]; measured within 0.032).
  style = photo_pair["style"]
  left, style_left = x0[:, 4:content.shape[1] // 2 - 4], style[:, :int(0.3 * style.shape[1]) - 2]
  np.testing.assert_allclose(left.reshape(-1, 3).mean(0), style_left.reshape(-1, 3).mean(0), atol=0.04)


def test_two_stage_run_keeps_the_content_and_its_contrast(default_weights, photo_pair):
  """A tiny run with the defaults (calibrated objective, colours start, both stages, smoothing): each stage lowers
  its objective, stage 2 lowers the matting energy, and the result carries the style (measured: 0.24x the
  content's style loss; bound 0.5x) without losing the content's structure (SSIM to it 0.79; bound 0.6) or its
  contrast (gray std 0.72x the content's, the style's is 0.89x; bound 0.6x): no haze."""
  content = photo_pair["content"]
  config = photoreal.PhotorealConfig(size=64, stage1_iterations=12, stage2_iterations=6, log_every=6,
                                     smooth_radius=4)
  seen = []
  result = photoreal.photoreal(weights=default_weights, config=config, progress=False,
                               on_stage=lambda stage, image: seen.append(stage), **photo_pair)
  assert seen == [1, 2]
  for stage in (result.stage1, result.stage2):
    assert np.all(np.isfinite(stage.loss_history))
    assert sum(stage.final_terms.values()) < sum(stage.initial_terms.values())
  assert "matting" in result.stage2.final_terms and "matting" not in result.stage1.final_terms
  assert result.stage2.final_terms["matting"] < result.stage2.initial_terms["matting"]
  assert result.image.shape == content.shape and 0.0 <= result.image.min() and result.image.max() <= 1.0
  style_loss = yardstick(default_weights, photo_pair)
  assert style_loss(result.image) < 0.5 * style_loss(content)
  gray, gray_content = metrics.gray(result.image), metrics.gray(content)
  assert metrics.ssim(gray, gray_content) >= 0.6
  assert gray.std() >= 0.6 * gray_content.std()


def test_coarse_to_fine_stage_one_is_upsampled_for_stage_two(default_weights, photo_pair):
  # log_every as in the two-stage test above: stage 2 (64 px) then reuses that test's compiled loop.
  config = photoreal.PhotorealConfig(size=64, stage1_size=32, stage1_iterations=4, stage2_iterations=2,
                                     log_every=6, smooth_radius=4)
  assert photoreal.stage_shapes(config, photo_pair["content"].shape) == ((32, 28), (64, 55))
  result = photoreal.photoreal(weights=default_weights, config=config, progress=False, **photo_pair)
  assert result.stage1.image.shape == (32, 28, 3) and result.image.shape == photo_pair["content"].shape


def rescaled_activations(params: dict, factors: dict[str, float]) -> dict:
  """VGG parameters whose every conv layer's output is `factors[layer]` times the original's: kernel and bias
  scaled by the layer's factor, the kernel divided by the previous layer's (ReLU and pooling commute with
  positive scaling)."""
  out, previous = {}, 1.0
  for name in vgg.layer_names("vgg16"):
    if name in params:
      out[name] = {"kernel": params[name]["kernel"] * factors[name] / previous,
                   "bias": params[name]["bias"] * factors[name]}
      previous = factors[name]
  return out


@pytest.fixture(scope="module")
def scaled_pair():
  """A random-weight VGG16 and the same network with its activations scaled by 1e-3..1e2 (never 1) per layer."""
  params = vgg.random_params("vgg16")
  factors = {name: 10.0 ** (-3, -2, -1, 1, 2)[i % 5] for i, name in enumerate(params)}  # none is 1
  make = lambda p: VGGWeights(arch="vgg16", params=p, preprocessing=CAFFE_VGG, source="test",
                              source_sha256="0" * 64, extras={})
  return make(params), make(rescaled_activations(params, factors))


def test_calibrated_objective_is_invariant_to_rescaled_activations(scaled_pair):
  """The calibration rule: every content and style term is a relative error of its layer (divided by its target's
  magnitude) and the matting term is per pixel, so a network whose activations at each layer are multiplied by a
  constant gives the same terms, gradients and optimised image. The reference objective, copied from VGG19's
  numbers, changes by orders of magnitude on the same rescaled network."""
  original, rescaled = scaled_pair
  rng = np.random.default_rng(5)
  content, style = rng.uniform(0, 1, (24, 32, 3)), rng.uniform(0, 1, (24, 30, 3))
  content_seg, style_seg = two_colour_map(24, 32, 0.4), two_colour_map(24, 30, 0.6)
  x = jnp.asarray(rng.uniform(0, 1, (24, 32, 3)), jnp.float32)

  def problem(weights, objective):
    config = photoreal.PhotorealConfig(size=32, objective=objective, stage1_iterations=6, stage2_iterations=6,
                                       content_layers=("relu2_2",), style_layers=("relu1_1", "relu2_1", "relu3_1"))
    cfg = photoreal.stylize_config(config, stage=2, shape=(24, 32), input_scale=255.0)
    return cfg, gatys.build_problem(content=content, styles=[style], weights=weights, config=cfg,
                                      content_seg=content_seg, style_seg=style_seg)

  def terms_and_grad(p):
    # Jitted as one program: run op by op, the VGG forward and backward compile hundreds of single-op programs.
    total = lambda img, inputs: sum(p.terms_fn(img, inputs).values())  # noqa: E731
    return jax.jit(lambda img, inputs: (p.terms_fn(img, inputs), jax.grad(total)(img, inputs)))(x, p.inputs)

  (cfg, a), (_, b) = problem(original, "calibrated"), problem(rescaled, "calibrated")
  (terms_a, grad_a), (terms_b, grad_b) = terms_and_grad(a), terms_and_grad(b)
  for key in ("content", "style", "matting"):
    assert float(terms_a[key]) > 0
    np.testing.assert_allclose(float(terms_b[key]), float(terms_a[key]), rtol=1e-4)
  np.testing.assert_allclose(grad_b, grad_a, rtol=1e-3, atol=1e-4 * float(jnp.max(jnp.abs(grad_a))))
  run_a = optimize_image(a.terms_fn, a.inputs, x, run=run_settings(cfg), progress=False)
  run_b = optimize_image(b.terms_fn, b.inputs, x, run=run_settings(cfg), progress=False)
  assert sum(run_a.final_terms.values()) < 0.5 * sum(run_a.initial_terms.values())
  np.testing.assert_allclose(run_b.image, run_a.image, atol=1e-3)

  # The terms alone: a forward program, which compiles faster than the terms and their gradient.
  reference = [problem(w, "reference")[1] for w in scaled_pair]
  reference_a, reference_b = (jax.jit(p.terms_fn)(x, p.inputs) for p in reference)
  for key in ("content", "style"):
    ratio = float(reference_b[key]) / float(reference_a[key])
    assert not 0.1 < ratio < 10, (key, ratio)


def test_local_affine_smoothing_reproduces_affine_colour_transforms():
  rng = np.random.default_rng(3)
  content = rng.uniform(0, 1, (20, 24, 3)).astype(np.float32)
  a = np.array([[0.8, 0.1, 0.0], [0.0, 0.6, 0.2], [0.1, 0.0, 0.9]], np.float32)
  output = content @ a.T + [0.05, 0.1, -0.02]
  got = photoreal.smooth_local_affine(output=output, content=content, radius=3)
  np.testing.assert_allclose(got, output, atol=5e-3)
  # A non-affine output is replaced by an affine function of the content in each neighbourhood: the result is
  # closer to the output than the content is, but not equal to it.
  wild = rng.uniform(0, 1, content.shape).astype(np.float32)
  smoothed = photoreal.smooth_local_affine(output=wild, content=content, radius=3)
  assert np.all(np.isfinite(smoothed)) and np.abs(smoothed - wild).mean() > 0.05


def test_guided_filter_keeps_constants_and_the_guide():
  rng = np.random.default_rng(4)
  guide = rng.uniform(0, 1, (18, 20, 3)).astype(np.float32)
  np.testing.assert_allclose(photoreal.guided_filter(guide=guide, source=np.full_like(guide, 0.3), radius=2),
                             0.3, atol=1e-5)
  np.testing.assert_allclose(photoreal.guided_filter(guide=guide, source=guide, radius=2, eps=1e-6), guide,
                             atol=1e-3)


def test_bad_settings_are_refused():
  for kwargs, field in [({"stage1_iterations": -1}, "stage1_iterations"), ({"smooth_sigma_r": 0.0}, "smooth_sigma_r"),
                        ({"refine_radius": 0}, "refine_radius"), ({"objective": "paper"}, "objective"),
                        ({"stage1_iterations": 0, "stage2_iterations": 0}, "stage2_iterations are both 0"),
                        ({"stage1_size": 8}, "stage1_size"), ({"matting_weight": -1.0}, "matting_weight"),
                        ({"range_weight": -1.0}, "range_weight"),
                        ({"objective": "reference", "style_layer_weights": {"relu1_1": 1.0}},
                         "style_layer_weights belong to the calibrated")]:
    with pytest.raises(NSTError, match=f"PhotorealConfig.{field}"):  # refused when the config is made
      photoreal.PhotorealConfig(**kwargs)


@pytest.mark.slow
def test_tiled_two_stage_run_equals_the_untiled_one(default_weights, content):
  """Both stages through the high-resolution engine (48 px in 2 x 2 tiles of 32 px, exact halo) against the untiled
  run: 3 + 2 Adam iterations from the same start give the same images. Adam, not the default L-BFGS: its loop
  compiles in a fraction of the time (the tiled L-BFGS loop is tested in highres_test.py), and it does not magnify
  float rounding as L-BFGS's first steps do (with L-BFGS: max |difference| 9.7e-4, mean 2e-6). Layers up to relu2_1
  (one pooling inside the halo; with relu3_1 the test took 1.35x longer). Measured with Adam: max 4.4e-6, mean 1.6e-7
  after post-processing (less after each stage; 3.4e-6 and 1.7e-7 up to relu3_1), hence max <= 1e-4 and mean
  <= 2e-6."""
  from nst_jax.highres import highres_config
  content = image_io.resize_long_side(content, 48)
  style = np.clip(content[::-1, ::-1] * [1.2, 0.8, 0.6], 0, 1).astype(np.float32)
  h, w = content.shape[:2]
  content_seg, style_seg = two_colour_map(h, w, 0.5), two_colour_map(h, w, 0.3)
  config = photoreal.PhotorealConfig(size=48, stage1_iterations=3, stage2_iterations=2, smooth_radius=3,
                                     optimizer="adam", content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))
  run = lambda hr: photoreal.photoreal(content=content, style=style, weights=default_weights, config=config,
                                       content_seg=content_seg, style_seg=style_seg, progress=False, hr=hr)
  untiled, tiled = run(None), run(highres_config.HighresConfig(tile_size=32))
  assert untiled.grid is None and tiled.grid.num_tiles == 4
  # Stage 1 starts from the same image; stage 2 from stage 1's results, which differ by float rounding (~1e-6),
  # and the matting energy (Δ⁻¹ up to 1e8 in flat windows) magnifies that to ~1e-5 relative.
  for a, b, rel in ((untiled.stage1, tiled.stage1, 1e-5), (untiled.stage2, tiled.stage2, 1e-4)):
    for key in a.initial_terms:
      assert b.initial_terms[key] == pytest.approx(a.initial_terms[key], rel=rel), key
    assert sum(b.final_terms.values()) < sum(b.initial_terms.values())
  for a, b in ((untiled.stage1.image, tiled.stage1.image), (untiled.unsmoothed, tiled.unsmoothed),
               (untiled.image, tiled.image)):
    np.testing.assert_allclose(b, a, atol=1e-4)
    assert np.abs(b - a).mean() <= 2e-6


def test_tiled_run_refuses_the_pyramid_and_checkpoints():
  from nst_jax.highres import highres_config
  for kwargs, field in [({"start_size": 16}, "start_size"), ({"checkpoint_dir": "x"}, "checkpoint_dir"),
                        ({"tile_batch": 0}, "tile_batch")]:
    # Refused by the HighresConfig itself or by what photoreal needs of it, naming the field.
    with pytest.raises(NSTError, match=f"HighresConfig.{field}"):
      photoreal.check_tiled_request(photoreal.PhotorealConfig(), highres_config.HighresConfig(**kwargs))


def test_command_line_presets_and_objective_defaults():
  """`photoreal` flags: the calibrated defaults with no flag, the reference's size and iterations with
  `--preset paper` (an explicit --size or iteration flag still wins), and weights left unset take the objective's
  defaults."""
  from nst_jax.cli import command
  from nst_jax.cli import photoreal as photoreal_cli

  def config(*args):
    fv, _, _ = command.parse(photoreal_cli.COMMAND, list(args))
    return photoreal_cli.config_from_flags(fv)

  default = config()
  assert (default.size, default.stage1_iterations, default.stage2_iterations) == (512, 0, 150)
  assert photoreal.loss_weights(default) == photoreal.CALIBRATED_WEIGHTS and default.init == "colors"
  paper = config("--preset", "paper")
  assert (paper.size, paper.stage1_iterations, paper.stage2_iterations) == (700, 1000, 1000)
  assert config("--preset", "paper", "--size", "300", "--stage2_iterations", "5").size == 300
  assert config("--preset", "paper", "--stage2_iterations", "5").stage2_iterations == 5
  reference = config("--objective", "reference", "--init", "mean")
  assert photoreal.loss_weights(reference) == photoreal.REFERENCE_WEIGHTS
  layers = config("--style_layer_weights", "relu1_1=1,relu5_1=0.5").style_layer_weights
  assert layers == {"relu1_1": 1.0, "relu5_1": 0.5}
  with pytest.raises(NSTError, match="calibrated"):
    config("--objective", "reference", "--style_layer_weights", "relu1_1=1")


def test_region_chroma_makes_a_gray_targets_result_gray(default_weights, photo_pair):
  """With a gray target the optimisation still leaves a faint tint (mean |I|, |Q| 0.0068 measured without the step);
  `region_chroma` (the default) makes the result gray (5e-8), and the post-processing keeps it so."""
  gray_pair = dict(photo_pair, style=np.repeat(metrics.gray(photo_pair["style"])[..., None], 3, axis=-1))
  config = photoreal.PhotorealConfig(size=64, stage1_size=32, stage1_iterations=4, stage2_iterations=2,
                                     log_every=6, smooth_radius=4)
  chroma = lambda image: float(np.abs(np.asarray(color.rgb_to_yiq(image))[..., 1:]).mean())
  plain = photoreal.photoreal(weights=default_weights, config=dataclasses.replace(config, region_chroma=False),
                              progress=False, **gray_pair)
  gray = photoreal.photoreal(weights=default_weights, config=config, progress=False, **gray_pair)
  assert chroma(plain.image) > 2e-3
  assert chroma(gray.image) < 1e-5
