"""Fast AdaIN inference and its training: the student encoder, decoder files that carry it, size
buckets, the style-statistics cache, the persistent compilation cache, and the new training stages.

A random VGG16 is the teacher unless a test needs real features (then hed-vgg16, skipped when absent); images are
32-96 px, so everything runs on a CPU in about a minute.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from nst_jax import demo
from nst_jax.errors import NSTError
from nst_jax.io import compile_cache, image_io, training_images
from nst_jax.losses import color
from nst_jax.methods import blend_tiles
from nst_jax.methods.adain import (cache as adain_cache, evaluation as adain_eval, ops as adain_ops, stylize as adain,
                                   train as adain_train)
from nst_jax.models import adain_decoder, adain_student, vgg
from nst_jax.models.preprocessing import CAFFE_VGG
from nst_jax.weights.format import VGGWeights

REPO = pathlib.Path(__file__).resolve().parents[1]
# Largest |difference| (RGB in [0, 1]) between a bucket-padded stylisation and the same computed on the unpadded
# image: float rounding only (convolutions of other sizes sum in another order; measured 4e-4 with the 50x last
# layer of `varied_model`), since every activation outside the image is zeroed.
BUCKET_TOLERANCE = 1e-3
_COMPILES: collections.Counter = collections.Counter()
jax.monitoring.register_event_duration_secs_listener(
    lambda name, *_, **__: _COMPILES.update([name]) if name == "/jax/core/compile/backend_compile_duration" else None)


@pytest.fixture(scope="module")
def teacher():
  return VGGWeights(arch="vgg16", params=vgg.random_params("vgg16", seed=1), preprocessing=CAFFE_VGG,
                    source="random test encoder", source_sha256="ab" * 32)


@pytest.fixture(scope="module")
def samples(content):
  return np.stack([content[:32, :32], content[-32:, -32:], content[:32, -32:][:, ::-1], content[-32:, :32][::-1]])


@pytest.fixture(scope="module")
def student(teacher, samples):
  params, channels = adain_student.prune_teacher(teacher.params, samples, width=8, preprocessing=CAFFE_VGG)
  return adain_student.Student(params, 8, channels, "vgg16", teacher.source_sha256, {"note": "test"}, CAFFE_VGG)


def _ckpt(teacher, student, *, width=8, padding="zero", skip_width=None, input_scale=1.0):
  """A random decoder; with a student it takes skips (the shipped design) unless skip_width=0."""
  skip_width = (8 if student is not None else 0) if skip_width is None else skip_width
  return adain_decoder.DecoderCheckpoint(
      params=adain_decoder.init_decoder("vgg16", width, seed=2, skip_width=skip_width), arch="vgg16", width=width,
      encoder_sha256=teacher.source_sha256, encoder_source=teacher.source, info={"note": "test"}, student=student,
      padding=padding, skip_width=skip_width, input_scale=input_scale)


@pytest.fixture(scope="module")
def fast_model(teacher, student):
  return adain.make_model(None, _ckpt(teacher, student))


def _reference_decoder(params, x, padding):
  """The paper's decoder written out: 'valid' convolutions of explicitly padded inputs."""
  names = list(adain_decoder.decoder_shapes("vgg16", 4))
  for name in names:
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect" if padding == "reflect" else "constant")
    x = jax.lax.conv_general_dilated(x, params[name + "/kernel"], (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC")) + params[name + "/bias"]
    if name != names[-1]:
      x = jax.nn.relu(x)
      if name in ("dec4_1", "dec3_1", "dec2_1"):
        x = adain_decoder.upsample_nearest(x)
  return x + 0.5


@pytest.mark.parametrize("padding", ["reflect", "zero"])
def test_decoder_convolutions_equal_the_explicitly_padded_reference(padding):
  params = {k: v * 20 if k.endswith("dec1_1/kernel") else v
            for k, v in adain_decoder.init_decoder("vgg16", 4, seed=1).items()}
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 5, 6, 512))
  out = adain_decoder.decode(params, x, arch="vgg16", width=4, padding=padding)
  ref = _reference_decoder(params, x, padding)
  assert out.shape == (1, 40, 48, 3) and float(jnp.std(out)) > 0.01
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5)


def test_pruned_student_reproduces_relu1_1_and_approximates_the_teacher(default_weights, content):
  """Channel pruning with least-squares reconstruction, fitted on some crops and measured on others: relu1_1 is
  the teacher's (a linear function of the pixels), deeper layers within the stated relative errors."""
  fit = np.stack([np.rot90(content[:40, :40], k) for k in range(4)] + [content[-40:, -40:][::-1]])
  test = np.stack([content[-40:, -40:], content[12:52, 8:48]])
  params, channels = adain_student.prune_teacher(default_weights.params, fit, width=16,
                                                 preprocessing=default_weights.preprocessing)
  t = adain_ops.encode(jax.device_put(default_weights.params), jnp.asarray(test), arch="vgg16",
                   preprocessing=default_weights.preprocessing, layers=adain_ops.STYLE_LAYERS)
  s = adain_student.encode(params, jnp.asarray(test), preprocessing=default_weights.preprocessing,
                           layers=adain_ops.STYLE_LAYERS)
  errors = {layer: float(adain_student.distill_loss(student_feats=s, teacher_feats=t, channels=channels,
                                                    layers=(layer,))) for layer in adain_ops.STYLE_LAYERS}
  assert errors["relu1_1"] < 1e-4, errors
  assert max(errors.values()) < 0.6, errors  # ~0.1-0.2 when fitted on 32 crops of the training set
  assert [len(channels[layer]) for layer in adain_student.LAYERS] == [16, 32, 64, 512]
  assert adain_student.flops_per_pixel(16) < adain_student.flops_per_pixel(64) / 12


def test_decoder_file_with_a_student_is_a_whole_model(teacher, student, content, tmp_path):
  path = adain_decoder.save_decoder(tmp_path / "m.npz", _ckpt(teacher, student, input_scale=0.03))
  loaded = adain_decoder.load_decoder(path)
  assert loaded.padding == "zero" and loaded.skip_width == 8 and loaded.student.width == 8
  assert loaded.input_scale == 0.03
  assert loaded.student.channels == student.channels
  assert loaded.student.preprocessing == CAFFE_VGG
  for key, value in student.params.items():
    np.testing.assert_array_equal(loaded.student.params[key], value.astype(np.float16).astype(np.float32))
  model = adain.make_model(None, loaded)  # no VGG weights needed
  assert model.student_width == 8 and model.encoder_id.startswith("student-")
  out = adain.stylize(content, [content[::-1]], model=model)
  assert out.shape == content.shape and np.all(np.isfinite(out))
  other = VGGWeights(arch="vgg16", params={}, preprocessing=CAFFE_VGG, source="other", source_sha256="cd" * 32)
  with pytest.raises(NSTError, match="--decoder was trained with"):
    adain.make_model(other, loaded)
  plain = adain_decoder.load_decoder(adain_decoder.save_decoder(tmp_path / "v1.npz",
                                                                _ckpt(teacher, None, padding="reflect")))
  assert plain.student is None and plain.padding == "reflect"
  with pytest.raises(NSTError, match="needs the VGG encoder"):
    adain.make_model(None, plain)


def test_student_file_round_trip_and_kind_check(teacher, student, tmp_path):
  path = adain_student.save_student(tmp_path / "s.npz", student)
  loaded = adain_student.load_student(path)
  assert (loaded.width, loaded.channels, loaded.teacher_sha256, loaded.preprocessing) == (
      student.width, student.channels, student.teacher_sha256, student.preprocessing)
  for key, value in student.params.items():
    np.testing.assert_array_equal(loaded.params[key], np.asarray(value, np.float32))
  decoder = adain_decoder.save_decoder(tmp_path / "d.npz", _ckpt(teacher, student))
  with pytest.raises(NSTError, match="not an nst_jax AdaIN student encoder"):
    adain_student.load_student(decoder)


def test_bucket_sides_are_few_and_cover_every_size():
  sides = {adain.bucket_side(n) for n in range(1, 4097)}
  assert len(sides) == 20 + 6 + 8  # multiples of 64 to 1280, of 128 to 2048, of 256 to 4096
  for n in range(1, 4097):
    b = adain.bucket_side(n)
    assert b >= n and b % 64 == 0 and (b - n) <= max(63, n // 8), (n, b)


@pytest.fixture(scope="module")
def varied_model(teacher, student):
  """The fast model with a last decoder layer 50x larger, so that outputs vary visibly with the input."""
  ckpt = _ckpt(teacher, student)
  ckpt.params = {k: v * 50 if k == "dec1_1/kernel" else v for k, v in ckpt.params.items()}
  return adain.make_model(None, ckpt)


def test_sizes_in_one_bucket_share_one_compilation_and_equal_the_unpadded_result(varied_model):
  model = varied_model
  assert adain.bucketed(model)
  photo, style = demo.default_content(), demo.swirl_painting(96, seed=1)
  stats = [adain.style_statistics(model, style)]
  # Without the output colour matching (`test_grayscale_style_gives_a_gray_output...` covers it), which the
  # reference below leaves out.
  kw = dict(model=model, style_stats=stats, style_colors=False)
  adain.stylize(image_io.resize(photo, 96, 80), [], **kw)  # compiles the 128x128 bucket
  before = _COMPILES["/jax/core/compile/backend_compile_duration"]
  second = image_io.resize(photo, 88, 72)  # the same bucket
  out = adain.stylize(second, [], **kw)
  assert _COMPILES["/jax/core/compile/backend_compile_duration"] == before
  adain.stylize(image_io.resize(photo, 136, 72), [], **kw)  # another bucket: compiles
  assert _COMPILES["/jax/core/compile/backend_compile_duration"] > before
  # The same stylisation of the unpadded image (88x72 is a multiple of 8; with the mirrored margin every
  # bucketed model adds and crops) with the public pieces.
  feats = lambda x: adain_student.encode(model.enc_params, jnp.asarray(x)[None],  # noqa: E731
                                         preprocessing=model.preprocessing, layers=adain_ops.STYLE_LAYERS)
  c, s = feats(adain.add_margin(second, adain.MARGIN)), feats(style)
  targets = {layer: adain_ops.adain(c[layer], s[layer]) for layer in adain_ops.STYLE_LAYERS}
  ref = np.clip(np.asarray(adain_decoder.decode(
      model.dec_params, targets["relu4_1"], arch=model.arch, width=model.width, padding=model.padding,
      skips={k: v for k, v in targets.items() if k != "relu4_1"}, skip_width=model.skip_width))[0], 0, 1)
  ref = ref[adain.MARGIN:-adain.MARGIN, adain.MARGIN:-adain.MARGIN]
  assert out.shape == ref.shape and float(np.std(ref)) > 0.02
  np.testing.assert_allclose(out, ref, atol=BUCKET_TOLERANCE)


def test_style_statistics_are_cached_per_file(fast_model, content, tmp_path, monkeypatch):
  style = tmp_path / "style.png"
  Image.fromarray((content[::-1] * 255).astype(np.uint8)).save(style)
  decoded, load_image = [], image_io.load_image
  monkeypatch.setattr(image_io, "load_image", lambda path, **kw: decoded.append(path) or load_image(path, **kw))
  folder = tmp_path / "cache"
  first = adain_cache.style_stats(style, model=fast_model, folder=folder)
  assert len(decoded) == 1 and len(list(folder.glob("*.npz"))) == 1
  again = adain_cache.style_stats(style, model=fast_model, folder=folder)
  assert len(decoded) == 1  # a hit does not decode the image
  assert set(first) == {*adain_ops.STYLE_LAYERS, adain.COLORS}  # skips: four layers, and the pixels' chroma
  direct = adain.style_statistics(fast_model, image_io.load_image(style))
  for layer in first:
    for a, b, c in zip(first[layer], again[layer], direct[layer]):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
      np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-6, atol=1e-6)
  Image.fromarray((content * 255).astype(np.uint8)).save(style)  # another picture under the same name
  changed = adain_cache.style_stats(style, model=fast_model, folder=folder)
  assert len(decoded) == 3 and len(list(folder.glob("*.npz"))) == 2
  assert not np.allclose(np.asarray(changed["relu4_1"][0]), np.asarray(first["relu4_1"][0]))
  for entry in folder.glob("*.npz"):
    entry.write_bytes(b"damaged")
  adain_cache.style_stats(style, model=fast_model, folder=folder)  # recomputed, not an error
  adain_cache.style_stats(style, model=fast_model, folder=None)
  assert len(decoded) == 5
  with pytest.raises(NSTError, match="style image .*does not exist"):
    adain_cache.style_stats(tmp_path / "none.png", model=fast_model, folder=folder)


def test_cache_folders_follow_flag_then_environment_then_default(monkeypatch, tmp_path):
  monkeypatch.delenv(compile_cache.ENV, raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert compile_cache.resolve(None) == tmp_path / "nst_jax" / "xla"
  assert adain_cache.resolve(None) == tmp_path / "nst_jax" / "adain_styles"
  monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "env"))
  assert compile_cache.resolve(None) == tmp_path / "env"
  assert compile_cache.resolve(str(tmp_path / "flag")) == tmp_path / "flag"
  for off in ("off", "0", "none", ""):
    assert compile_cache.resolve(off) is None and adain_cache.resolve(off) is None
  monkeypatch.setenv(compile_cache.ENV, "off")
  assert compile_cache.resolve(None) is None


def test_second_cli_run_does_no_compilation(teacher, student, content, tmp_path):
  """A fresh process with the same inputs loads every executable from the persistent cache (no new cache
  entries); a content of another size in the same bucket too; with the cache off nothing is written."""
  decoder = adain_decoder.save_decoder(tmp_path / "m.npz", _ckpt(teacher, student))
  for name, image in (("a.png", content), ("b.png", content[:56, :52]), ("s.png", content[::-1])):
    Image.fromarray((image * 255).astype(np.uint8)).save(tmp_path / name)
  cache, styles = tmp_path / "xla", tmp_path / "styles"
  env = dict(os.environ, JAX_PLATFORMS="cpu", NST_JAX_STYLE_CACHE=str(styles))

  def run(content_name, output, *extra):
    proc = subprocess.run([sys.executable, "-m", "nst_jax", "adain", "--content", str(tmp_path / content_name),
                           "--style", str(tmp_path / "s.png"), "--decoder", str(decoder), "--output",
                           str(tmp_path / output), *extra], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return sorted(p.name for p in cache.iterdir())

  first = run("a.png", "1.png", "--compilation_cache", str(cache))
  assert first and len(list(styles.glob("*.npz"))) == 1
  assert run("a.png", "2.png", "--compilation_cache", str(cache)) == first
  assert (tmp_path / "1.png").read_bytes() == (tmp_path / "2.png").read_bytes()
  side = lambda n: adain.bucket_side(-(-(n + 2 * adain.MARGIN) // 8) * 8)  # noqa: E731
  assert content.shape[:2] != (56, 52) and (side(56), side(52)) == (side(content.shape[0]), side(content.shape[1]))
  assert run("b.png", "3.png", "--compilation_cache", str(cache)) == first
  env[compile_cache.ENV] = str(tmp_path / "unused")
  run("a.png", "4.png", "--compilation_cache", "off")
  assert not (tmp_path / "unused").exists()


# Largest mean chroma (max(R, G, B) - min(R, G, B)) of an output with a grayscale style: the style's chroma std is
# sqrt(eps) = 0.003 (feature_stats), so the output is gray up to that, whatever the decoder.
GRAY_CHROMA = 0.01


def test_grayscale_style_gives_a_gray_output_and_keeps_the_luma(varied_model, content):
  gray_style = np.repeat(content[::-1].mean(axis=-1, keepdims=True), 3, axis=-1)
  colored = adain.stylize(content, [gray_style], model=varied_model, style_colors=False)
  out = adain.stylize(content, [gray_style], model=varied_model)
  assert adain_eval.chroma(colored) > 5 * GRAY_CHROMA  # this random decoder alone would not give gray
  assert adain_eval.chroma(out) < GRAY_CHROMA, adain_eval.chroma(out)
  inside = (colored > 0.02).all(-1) & (colored < 0.98).all(-1) & (out > 0.02).all(-1) & (out < 0.98).all(-1)
  luma = lambda x: np.asarray(color.rgb_to_yiq(x))[..., 0]  # noqa: E731
  np.testing.assert_allclose(luma(out)[inside], luma(colored)[inside], atol=1e-4)
  half = adain.stylize(content, [gray_style], model=varied_model, alpha=0.5)
  assert GRAY_CHROMA < adain_eval.chroma(half)  # alpha blends the correction too
  tiled = adain.stylize(content, [gray_style], model=varied_model, tiling=blend_tiles.Tiling(tile=32, overlap=8,
                                                                                      thumbnail=64))
  assert adain_eval.chroma(tiled) < GRAY_CHROMA  # tiles use the thumbnail's output statistics


# ------------------------------------------------------------------------------------------------------ training


def _pools(content):
  img = (content * 255).astype(np.uint8)
  return [img, img[::-1]], [img[:, ::-1], 255 - img, np.repeat(img[..., :1], 3, axis=-1)]


def _losses(trainer, pools, steps, key="loss"):
  state, out = trainer.init_state(), []
  for _, c, s in training_images.batches(*pools, start=0, stop=steps, config=trainer.config):
    state, terms = trainer.step(state, *trainer.shard_batch(c, s))
    out.append(float(terms[key]))
  return state, out


@pytest.mark.parametrize("stage, key, extra", [
    ("reconstruct", "pixel", dict(pixel_weight=1.0, content_weight=1e-3, skips=True)),
    ("adain", "loss", dict(loss_net="student", style_weight=1.0, style_norm="relative", skips=True)),
    ("adain", "gram", dict(loss_net="teacher", style_weight=1.0, gram_weight=1.0)),
    ("distill", "distill", dict())])
def test_training_stages_lower_their_losses(teacher, student, content, stage, key, extra):
  config = adain_train.TrainConfig(crop=32, batch=2, steps=12, lr=3e-3, width=4, stage=stage, encoder_width=8,
                                   decoder_padding="zero", **extra)
  trainer = adain_train.make_trainer(config, teacher, student=student)
  _, losses = _losses(trainer, _pools(content), 12, key)
  assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3]), losses


def test_ema_is_exported_and_resumed(teacher, student, content, tmp_path):
  config = adain_train.TrainConfig(crop=32, batch=2, steps=3, lr=1e-3, width=4, encoder_width=8, ema=0.5,
                                   loss_net="student", schedule="cosine", gray_styles=0.5)
  trainer = adain_train.make_trainer(config, teacher, student=student)
  pools = _pools(content)
  state, _ = _losses(trainer, pools, 3)
  init = trainer.init_state()
  exported = trainer.export_params(state)
  params = jax.device_get(state["params"])
  assert not np.allclose(exported["dec1_1/kernel"], params["dec1_1/kernel"])
  assert not np.allclose(exported["dec1_1/kernel"], np.asarray(init["params"]["dec1_1/kernel"]))
  adain_train.save_checkpoint(tmp_path / "c.npz", state, config=config, weights=teacher)
  resumed, _ = adain_train.load_checkpoint(tmp_path / "c.npz", trainer)
  np.testing.assert_array_equal(np.asarray(resumed["ema"]["dec1_1/kernel"]), exported["dec1_1/kernel"])
  longer = adain_train.make_trainer(dataclasses.replace(config, steps=6), teacher, student=student)
  with pytest.raises(NSTError, match="--resume.*steps=3"):  # the cosine schedule ends at `steps`
    adain_train.load_checkpoint(tmp_path / "c.npz", longer)


def test_gray_style_crops_are_gray_and_chroma_measures_colour(content):
  config = adain_train.TrainConfig(crop=32, batch=4, gray_styles=1.0)
  _, styles = training_images.make_batch(*_pools(content), 0, config=config, seed=0)
  assert np.all(styles.max(-1) - styles.min(-1) < 1e-6)
  assert adain_eval.chroma(styles[0]) == 0.0 and adain_eval.chroma(content) > 0.05
