"""Photorealistic style transfer: the reference objective, a small two-stage run and the post-processing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax.io import image_io
from nst_jax.losses import guidance, matting, segmentation
from nst_jax.methods import gatys, photoreal
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
                                     stage2_iterations=1)
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


def test_two_stage_run_is_finite_and_lowers_both_losses(default_weights, content):
  style = image_io.resize_long_side(np.clip(content[::-1, ::-1] * [1.2, 0.8, 0.6], 0, 1), 64)
  h, w = content.shape[:2]
  content_seg = two_colour_map(h, w, 0.5)
  style_seg = two_colour_map(*style.shape[:2], 0.3)
  config = photoreal.PhotorealConfig(size=64, stage1_iterations=12, stage2_iterations=6, log_every=6,
                                     smooth_radius=4)
  seen = []
  result = photoreal.photoreal(content=content, style=style, weights=default_weights, config=config,
                               content_seg=content_seg, style_seg=style_seg, progress=False,
                               on_stage=lambda stage, image: seen.append(stage))
  assert seen == [1, 2]
  for stage in (result.stage1, result.stage2):
    assert np.all(np.isfinite(stage.loss_history))
    assert sum(stage.final_terms.values()) < 0.5 * sum(stage.initial_terms.values())
  assert "matting" in result.stage2.final_terms and "matting" not in result.stage1.final_terms
  # Stage 2 trades a little style for photorealism: its matting energy falls from stage 1's.
  assert result.stage2.final_terms["matting"] < result.stage2.initial_terms["matting"]
  assert result.image.shape == content.shape and np.all(np.isfinite(result.image))
  assert 0.0 <= result.image.min() and result.image.max() <= 1.0


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
  for kwargs, flag in [({"stage1_iterations": 0}, "--stage1_iterations"), ({"smooth_sigma_r": 0.0},
                                                                           "--smooth_sigma_r"),
                       ({"refine_radius": 0}, "--refine_radius")]:
    with pytest.raises(NSTError, match=flag):  # refused when the config is made
      photoreal.PhotorealConfig(**kwargs)


@pytest.mark.slow
def test_tiled_two_stage_run_equals_the_untiled_one(default_weights, content):
  """Both stages through the high-resolution engine (48 px in 2 x 2 tiles of 32 px, exact halo) against the untiled
  run: 3 + 2 L-BFGS iterations from the same start give the same images. Measured: mean |difference| 2e-6 after
  each stage and after post-processing; the largest, 9.7e-4 after stage 1, in a few pixels (L-BFGS's first steps
  from the near-constant start magnify float rounding), hence max <= 3e-3 and mean <= 2e-5 here."""
  from nst_jax.highres import highres_config
  content = image_io.resize_long_side(content, 48)
  style = np.clip(content[::-1, ::-1] * [1.2, 0.8, 0.6], 0, 1).astype(np.float32)
  h, w = content.shape[:2]
  content_seg, style_seg = two_colour_map(h, w, 0.5), two_colour_map(h, w, 0.3)
  config = photoreal.PhotorealConfig(size=48, stage1_iterations=3, stage2_iterations=2, smooth_radius=3,
                                     content_layers=("relu2_2",), style_layers=("relu1_1", "relu2_1", "relu3_1"))
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
    np.testing.assert_allclose(b, a, atol=3e-3)
    assert np.abs(b - a).mean() <= 2e-5


def test_tiled_run_refuses_the_pyramid_and_checkpoints():
  from nst_jax.highres import highres_config
  for kwargs, flag in [({"start_size": 16}, "--start_size"), ({"checkpoint_dir": "x"}, "--checkpoint_dir"),
                       ({"tile_batch": 0}, "--tile_batch")]:
    with pytest.raises(NSTError, match=flag):  # by the HighresConfig itself, or by what photoreal needs of it
      photoreal.check_tiled_request(photoreal.PhotorealConfig(), highres_config.HighresConfig(**kwargs))
