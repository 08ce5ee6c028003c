"""AdaIN (Huang & Belongie 2017): the operation and its controls against NumPy references, the decoder and its
checkpoint, and thumbnail-statistics tiling; decoder training is in adain_train_test.py.

The encoder is a random VGG16 with Caffe preprocessing and the decoders are tiny (width 4-8), so everything runs
at 32-64 px on a CPU in well under a minute.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from adain_helpers import decoder_checkpoint
from nst_jax import demo
from nst_jax.errors import NSTError
from nst_jax.io import image_io
from nst_jax.losses import color
from nst_jax.methods import blend_tiles
from nst_jax.methods.adain import ops as adain_ops, stylize as adain
from nst_jax.models import adain_decoder, vgg
from nst_jax.models.preprocessing import CAFFE_VGG
from nst_jax.weights import adain_decoders
from nst_jax.weights.format import VGGWeights

REPO = pathlib.Path(__file__).resolve().parents[1]


def np_stats(x, mask=None, eps=adain_ops.EPS):
  x = np.asarray(x, np.float64)
  if mask is None:
    mask = np.ones(x.shape[1:3])
  m = mask[None, :, :, None]
  mean = (x * m).sum(axis=(1, 2), keepdims=True) / m.sum()
  var = (np.square(x - mean) * m).sum(axis=(1, 2), keepdims=True) / m.sum()
  return mean, np.sqrt(var + eps)


@pytest.fixture(scope="module")
def feats():
  rng = np.random.default_rng(0)
  content = rng.gamma(2.0, 3.0, (2, 8, 10, 16)).astype(np.float32)
  styles = [(rng.normal(5.0, 4.0, (2, 6, 7, 16)) * rng.uniform(0.5, 2, 16)).astype(np.float32) for _ in range(2)]
  return content, styles


def test_adain_gives_exactly_the_style_mean_and_std(feats):
  content, (style, _) = feats
  out = np.asarray(adain_ops.adain(jnp.asarray(content), jnp.asarray(style)), np.float64)
  s_mean, s_std = np_stats(style)
  c_mean, c_std = np_stats(content)
  np.testing.assert_allclose(out, s_std * (content - c_mean) / c_std + s_mean, rtol=1e-5, atol=1e-4)
  o_mean, o_std = np_stats(out, eps=0.0)
  np.testing.assert_allclose(o_mean, s_mean, rtol=1e-5, atol=1e-4)
  # sqrt(var + eps) in the content's std: the output std is s_std * sqrt(var_c / (var_c + eps)), here 1 - 1e-7.
  np.testing.assert_allclose(o_std, s_std, rtol=1e-5)


def test_alpha_zero_returns_content_and_alpha_interpolates(feats):
  content, styles = feats
  stats = [adain_ops.feature_stats(jnp.asarray(s)) for s in styles]
  c = jnp.asarray(content)
  np.testing.assert_array_equal(adain_ops.adain_target(c, style_stats=stats, alpha=0.0), content)
  full = np.asarray(adain_ops.adain_target(c, style_stats=stats[:1], alpha=1.0))
  np.testing.assert_allclose(full, adain_ops.adain(c, jnp.asarray(styles[0])), rtol=1e-6, atol=1e-5)
  np.testing.assert_allclose(adain_ops.adain_target(c, style_stats=stats[:1], alpha=0.3), 0.3 * full + 0.7 * content,
                             rtol=1e-5, atol=1e-4)


def test_style_interpolation_is_the_weighted_sum_of_single_style_targets(feats):
  content, styles = feats
  c = jnp.asarray(content)
  stats = [adain_ops.feature_stats(jnp.asarray(s)) for s in styles]
  mixed = adain_ops.adain_target(c, style_stats=stats, style_weights=jnp.asarray([3.0, 1.0]))
  singles = [np.asarray(adain_ops.adain(c, jnp.asarray(s))) for s in styles]
  np.testing.assert_allclose(mixed, 0.75 * singles[0] + 0.25 * singles[1], rtol=1e-5, atol=1e-4)


def test_masks_give_each_region_its_style_statistics(feats):
  content, styles = feats
  masks = np.zeros((2, 8, 10), np.float32)
  masks[0, :, :4], masks[1, :, 4:] = 1.0, 1.0
  stats = [adain_ops.feature_stats(jnp.asarray(s)) for s in styles]
  out = np.asarray(adain_ops.adain_target(jnp.asarray(content), style_stats=stats, masks=jnp.asarray(masks)))
  for k in range(2):
    # Region k standardised with its own content statistics takes style k's mean and std.
    o_mean, o_std = np_stats(out, masks[k], eps=0.0)
    s_mean, s_std = np_stats(styles[k])
    np.testing.assert_allclose(o_mean, s_mean, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(o_std, s_std, rtol=1e-4)


@pytest.fixture(scope="module")
def layer_feats(feats) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
  """(output, style) features at every AdaIN style layer, different per layer."""
  content, (style, _) = feats
  return ({layer: content * (i + 1) for i, layer in enumerate(adain_ops.STYLE_LAYERS)},
          {layer: style + i for i, layer in enumerate(adain_ops.STYLE_LAYERS)})


def test_style_loss_matches_numpy(feats, layer_feats):
  content = feats[0]
  out, sty = layer_feats
  want = 0.0
  for layer in adain_ops.STYLE_LAYERS:
    (om, os_), (sm, ss) = np_stats(out[layer]), np_stats(sty[layer])
    want += np.mean((om - sm) ** 2) + np.mean((os_ - ss) ** 2)
  got = adain_ops.style_stats_loss(output_feats={k: jnp.asarray(v) for k, v in out.items()},
                               style_feats={k: jnp.asarray(v) for k, v in sty.items()})
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  np.testing.assert_allclose(float(adain_ops.content_loss(output_feats=jnp.asarray(content), target=jnp.asarray(content)
                                                      + 2.0)), 4.0, rtol=1e-6)


def test_gram_loss_matches_numpy(layer_feats):
  out, sty = layer_feats
  want = 0.0
  for layer in adain_ops.STYLE_LAYERS:
    errors = []
    for o, t in zip(out[layer], sty[layer]):  # per image: F^T F / (H W)
      g_o = o.reshape(-1, o.shape[-1]).astype(np.float64)
      g_t = t.reshape(-1, t.shape[-1]).astype(np.float64)
      g_o, g_t = g_o.T @ g_o / len(g_o), g_t.T @ g_t / len(g_t)
      errors.append(np.sum((g_o - g_t) ** 2) / np.sum(g_t ** 2))
    want += np.mean(errors)
  got = adain_ops.style_gram_loss(output_feats={k: jnp.asarray(v) for k, v in out.items()},
                                  style_feats={k: jnp.asarray(v) for k, v in sty.items()})
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  same = {k: jnp.asarray(v) for k, v in sty.items()}
  assert float(adain_ops.style_gram_loss(output_feats=same, style_feats=same)) == 0.0


def test_decoder_mirrors_the_encoder():
  shapes = adain_decoder.decoder_shapes("vgg16", 64)
  assert list(shapes) == ["dec4_1", "dec3_3", "dec3_2", "dec3_1", "dec2_2", "dec2_1", "dec1_2", "dec1_1"]
  enc = vgg.conv_shapes("vgg16")
  for name, (kshape, _) in shapes.items():
    e = enc["conv" + name[3:]][0]
    assert kshape == (3, 3, e[3], e[2])  # in/out channels swapped
  assert list(adain_decoder.decoder_shapes("vgg19", 64))[:5] == ["dec4_1", "dec3_4", "dec3_3", "dec3_2", "dec3_1"]
  params = adain_decoder.init_decoder("vgg16", 8)
  assert {k: v.shape for k, v in params.items()} == {f"{n}/{p}": s for n, (k, b) in adain_decoder.decoder_shapes(
      "vgg16", 8).items() for p, s in (("kernel", k), ("bias", b))}
  out = adain_decoder.decode(params, jnp.zeros((1, 3, 5, 512)), arch="vgg16", width=8)
  assert out.shape == (1, 24, 40, 3)


def test_fresh_decoder_has_the_initialisers_distribution():
  """`init_decoder` (NumPy) draws each kernel from `Decoder`'s initialiser: a normal truncated at two standard
  deviations whose variance is 1/fan_in (the last convolution 0.01/fan_in), zero biases; seeded, and different
  seeds give different kernels. Checked against the formula on the width-64 decoder (3.5M values)."""
  params = adain_decoder.init_decoder("vgg16", 64, seed=3)
  shapes = adain_decoder.decoder_shapes("vgg16", 64)
  for i, (name, (kshape, _)) in enumerate(shapes.items()):
    kernel, fan_in = params[name + "/kernel"], np.prod(kshape[:-1])
    std = np.sqrt((0.01 if i == len(shapes) - 1 else 1.0) / fan_in)
    assert kernel.dtype == np.float32 and not np.any(params[name + "/bias"])
    assert np.abs(kernel).max() <= 2 * std / 0.8796256610342398 * (1 + 1e-6)
    # Standard error of a sample std over n values: std / sqrt(2n); 6 of them, or 2% for the small last layer.
    np.testing.assert_allclose(kernel.std(), std, rtol=max(6 / np.sqrt(2 * kernel.size), 0.02))
    assert abs(kernel.mean()) < 6 * std / np.sqrt(kernel.size)
  again, other = adain_decoder.init_decoder("vgg16", 64, seed=3), adain_decoder.init_decoder("vgg16", 64, seed=4)
  assert all(np.array_equal(params[k], again[k]) for k in params)
  assert not np.array_equal(params["dec3_1/kernel"], other["dec3_1/kernel"])


# ---------------------------------------------------------------------------------------------------- checkpoint


def test_decoder_checkpoint_round_trip_fp16(encoder, tmp_path):
  ckpt = decoder_checkpoint(encoder)
  path = adain_decoder.save_decoder(tmp_path / "d.npz", ckpt)
  loaded = adain_decoder.load_decoder(path)
  assert (loaded.arch, loaded.width, loaded.encoder_sha256, loaded.info) == ("vgg16", 8, "ab" * 32, {"note": "test"})
  for key, value in ckpt.params.items():
    np.testing.assert_array_equal(loaded.params[key], np.asarray(value).astype(np.float16).astype(np.float32))
  adain_decoders.check_encoder(loaded, encoder)
  other = VGGWeights(arch="vgg16", params={}, preprocessing=CAFFE_VGG, source="other", source_sha256="cd" * 32)
  with pytest.raises(NSTError, match="trained with the vgg16 encoder sha256 abab.*--weights") as e:
    adain_decoders.check_encoder(loaded, other)
  assert "\n" not in str(e.value)


def _rewrite(src, dst, *, drop=None, change=None, meta=None):
  with np.load(src) as npz:
    arrays = {k: npz[k] for k in npz.files}
  if drop:
    del arrays[drop]
  if change:
    arrays[change[0]] = change[1]
  if meta:
    m = json.loads(str(arrays["__meta__"]))
    m.update(meta)
    arrays["__meta__"] = np.array(json.dumps(m))
  np.savez(dst, **arrays)
  return dst


@pytest.mark.parametrize("kind, pattern", [
    ("missing", "'dec1_1/bias' is missing"), ("shape", "'dec4_1/kernel' has shape"),
    ("dtype", "'dec1_1/bias' is int32"), ("width", "'dec4_1/kernel' has shape"), ("format", "not an nst_jax AdaIN"),
    ("nonfinite", "'dec1_1/bias' is not finite"), ("garbage", "not an nst_jax AdaIN decoder .npz"),
    ("absent", "no such decoder file")])
def test_decoder_loading_is_strict(encoder, tmp_path, kind, pattern):
  good = adain_decoder.save_decoder(tmp_path / "good.npz", decoder_checkpoint(encoder))
  bad = tmp_path / "bad.npz"
  if kind == "missing":
    _rewrite(good, bad, drop="dec1_1/bias")
  elif kind == "shape":
    _rewrite(good, bad, change=("dec4_1/kernel", np.zeros((3, 3, 512, 17), np.float16)))
  elif kind == "dtype":
    _rewrite(good, bad, change=("dec1_1/bias", np.zeros(3, np.int32)))
  elif kind == "width":
    _rewrite(good, bad, meta={"width": 16})
  elif kind == "format":
    _rewrite(good, bad, meta={"format": "something-else"})
  elif kind == "nonfinite":
    _rewrite(good, bad, change=("dec1_1/bias", np.array([0, np.nan, 0], np.float16)))
  elif kind == "garbage":
    bad.write_text("not a zip")
  with pytest.raises(NSTError, match=pattern) as e:
    adain_decoder.load_decoder(bad)
  assert "\n" not in str(e.value)


# -------------------------------------------------------------------------------------------------------- tiling


@pytest.fixture(scope="module")
def model(encoder):
  return adain.make_model(encoder, decoder_checkpoint(encoder, width=8, seed=3))


SHIPPED = REPO / "weights" / "adain-decoder-hed-vgg16.npz"
# Tiled (128-px tiles overlapping by 48 px) vs untiled at 256x192 with the shipped decoder: the stated bound on the
# mean |difference| of the RGB outputs in [0, 1].
TILING_TOLERANCE = 0.04


@pytest.fixture(scope="module")
def shipped_model(default_weights):
  if not SHIPPED.is_file():
    pytest.skip("the shipped decoder is not in this checkout")
  return adain.make_model(default_weights, adain_decoder.load_decoder(SHIPPED))


def test_thumbnail_statistics_tiling_agrees_with_the_whole_image(shipped_model):
  """With the thumbnail as large as the image, thumbnail-normalised tiles differ from the untiled result only
  through the receptive field at tile borders (softened by the overlap ramps); tiles normalised with their own
  statistics (plain tiling, what URST avoids) disagree with the whole image much more."""
  from nst_jax import demo  # pylint: disable=import-outside-toplevel
  image = image_io.resize(demo.default_content(), 256, 192)
  style = demo.swirl_painting(128)
  whole = adain.stylize(image, [style], model=shipped_model)
  tiled = adain.stylize(image, [style], model=shipped_model, tiling=blend_tiles.Tiling(tile=128, overlap=48,
                                                                                 thumbnail=256))
  assert tiled.shape == whole.shape == image.shape
  diff = np.abs(tiled - whole).mean()
  assert diff < TILING_TOLERANCE, diff
  ys, xs = blend_tiles.tile_starts(256, 128, 48), blend_tiles.tile_starts(192, 128, 48)
  own = np.mean([np.abs(adain.stylize(image[y:y + 128, x:x + 128], [style], model=shipped_model)
                        - whole[y:y + 128, x:x + 128]).mean() for y in ys for x in xs])
  assert diff < 0.7 * own, (diff, own)


def test_stylize_controls_and_errors(model, content):
  style = content[::-1]
  a0 = adain.stylize(content, [style, style[:, ::-1]], model=model, alpha=0.0, style_weights=[1, 0])
  a0b = adain.stylize(content, [content], model=model, alpha=0.0)
  np.testing.assert_allclose(a0, a0b, atol=1e-6)  # alpha = 0: the content's reconstruction, whatever the style
  lum = adain.stylize(content, [style], model=model, preserve_colors="luminance")
  yiq = np.asarray(color.rgb_to_yiq(lum))[..., 1:]
  inside = (lum > 0.02).all(-1) & (lum < 0.98).all(-1)
  np.testing.assert_allclose(yiq[inside], np.asarray(color.rgb_to_yiq(content))[..., 1:][inside], atol=2e-3)
  with pytest.raises(NSTError, match="--alpha"):
    adain.stylize(content, [style], model=model, alpha=1.5)
  with pytest.raises(NSTError, match="--style_blend needs one weight per style"):
    adain.stylize(content, [style], model=model, style_weights=[1, 2])
  with pytest.raises(NSTError, match="cannot be combined"):
    adain.stylize(content, [style], model=model, style_weights=[1], masks=np.ones((1,) + content.shape[:2]))


# ------------------------------------------------------------------------------------------- batches of frames


def clip_of(content: np.ndarray, count: int) -> np.ndarray:
  """`count` frames of one size: crops of the content moving right by 1 px a frame."""
  return np.stack([content[4:44, t:t + 48] for t in range(count)]).astype(np.float32)


def test_a_batch_of_frames_equals_stylize_frame_by_frame(shipped_model, content):
  """Per-frame statistics stay per frame in the batched pass, with the shipped model's margin and size bucket (a
  random model on 8 devices: the test below)."""
  model = shipped_model
  frames, stats = clip_of(content, 3), [adain.style_statistics(model, demo.swirl_painting(size=48))]
  batch = adain.stylize_batch(frames, model=model, style_stats=stats, alpha=0.8)
  for frame, got in zip(frames, batch):
    np.testing.assert_allclose(got, adain.stylize(frame, [], model=model, style_stats=stats, alpha=0.8), atol=2e-5)
  with pytest.raises(NSTError, match="under"):
    adain.stylize_batch(np.zeros((1, 2000, 2000, 3), np.float32), model=model, style_stats=stats)


_EIGHT_DEVICES = """
import json, sys
import jax, numpy as np
sys.path.insert(0, "tests")
from adain_helpers import decoder_checkpoint
from nst_jax import demo
from nst_jax.io import image_io
from nst_jax.methods.adain import stylize as adain
from nst_jax.models import vgg
from nst_jax.models.preprocessing import CAFFE_VGG
from nst_jax.weights.format import VGGWeights
encoder = VGGWeights(arch="vgg16", params=vgg.random_params("vgg16", seed=1), preprocessing=CAFFE_VGG,
                     source="random test encoder", source_sha256="ab" * 32)
model = adain.make_model(encoder, decoder_checkpoint(encoder, width=8, seed=3))
content = image_io.resize_long_side(demo.default_content(), 64)
frames = np.stack([content[4:44, t:t + 48] for t in range(5)]).astype(np.float32)
stats = [adain.style_statistics(model, demo.swirl_painting(size=48))]
batch = adain.stylize_batch(frames, model=model, style_stats=stats)
single = np.stack([adain.stylize(f, [], model=model, style_stats=stats) for f in frames])
from wct_test import decoder_set
from nst_jax.methods.wct import stylize as wct
wct_model = wct.make_model(encoder, decoder_set(encoder, levels=("relu2_1", "relu1_1")))
transforms = [wct.style_transforms(wct_model, demo.swirl_painting(size=48))]
# eps 1e-2: the random encoder's dead channels make the default-eps whitening amplify float32 rounding, which
# differs between 8 devices and one (0.02 at 1e-5 here).
wct_batch = wct.stylize_batch(frames, model=wct_model, transforms=transforms, eps=1e-2)
wct_single = np.stack([wct.stylize(f, [], model=wct_model, transforms=transforms, eps=1e-2) for f in frames])
json.dump({"devices": jax.device_count(), "max_diff": float(np.abs(batch - single).max()),
           "wct_max_diff": float(np.abs(wct_batch - wct_single).max())}, sys.stdout)
"""


@pytest.mark.slow
def test_five_frames_sharded_over_eight_simulated_devices_equal_frame_by_frame():
  """AdaIN's and WCT's batched passes with the frames sharded over 8 devices (5 frames padded to 8)."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", _EIGHT_DEVICES], cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["devices"] == 8 and out["max_diff"] < 2e-5 and out["wct_max_diff"] < 1e-4, out  # WCT: float32 eigh
