"""The fast photorealistic method (`nst_jax.methods.photoreal.photowct`): segmentation-guided PhotoWCT on a random
VGG16 with tiny unpooling decoders, then the closed-form smoothing."""

from __future__ import annotations

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, run_cli, write_seg
from nst_jax.errors import NSTError
from nst_jax.io import image_io
from nst_jax.losses import color, matting, segmentation
from nst_jax.methods.photoreal import photowct
from nst_jax.models import vgg, wct_decoder
from nst_jax.models.preprocessing import CAFFE_VGG
from nst_jax.weights.format import VGGWeights, load_weights


@pytest.fixture(scope="module")
def weights():
  return VGGWeights("vgg16", vgg.random_params("vgg16", seed=3), CAFFE_VGG, "random", "0" * 64)


def decoder_set(weights, layers):
  levels = {layer: wct_decoder.LevelDecoder(wct_decoder.init_decoder("vgg16", layer, 4, seed=i), 4,
                                            upsampling="unpool") for i, layer in enumerate(layers)}
  return wct_decoder.DecoderSet(levels, "vgg16", weights.source_sha256, weights.source)


@pytest.fixture(scope="module")
def model(weights):
  return photowct.make_model(weights, decoder_set(weights, photowct.LEVELS))


@pytest.fixture(scope="module")
def shallow(weights):
  """relu1_1 alone: one convolution in, one out, so an output pixel sees the content within 2 px."""
  return photowct.make_model(weights, decoder_set(weights, ("relu1_1",)))


@pytest.fixture(scope="module")
def images():
  rng = np.random.default_rng(0)
  content = rng.random((32, 48, 3)).astype(np.float32)
  style = rng.random((32, 32, 3)).astype(np.float32)
  # Style regions two columns apart: relu1_1's 3x3 convolution at one does not reach into the other.
  halves = np.zeros((2, 32, 32), np.float32)
  halves[0, :, :14], halves[1, :, 16:] = 1.0, 1.0
  content_halves = np.zeros((2, 32, 48), np.float32)
  content_halves[0, :, :24], content_halves[1, :, 24:] = 1.0, 1.0
  return content, style, halves, content_halves


def test_region_transforms_use_only_their_style_region(model, shallow, images):
  _, style, halves, _ = images
  changed = style.copy()
  changed[:, 16:] = 1.0 - changed[:, 16:]
  assert list(photowct.region_transforms(model, style, halves)) == list(photowct.LEVELS)
  before = photowct.region_transforms(shallow, style, halves)
  after = photowct.region_transforms(shallow, changed, halves)
  for layer in ("relu1_1",):
    np.testing.assert_allclose(after[layer][0].coloring, before[layer][0].coloring, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(after[layer][0].mean, before[layer][0].mean, rtol=1e-5, atol=1e-5)
    assert not np.allclose(after[layer][1].mean, before[layer][1].mean, rtol=1e-3)


def test_each_content_region_takes_only_its_style_regions_transform(shallow, images):
  """Changing the style's right region changes the output only in the content's right region (beyond the 2-px
  reach of one convolution in and one out)."""
  content, style, halves, content_halves = images
  changed = style.copy()
  changed[:, 16:] = 1.0 - changed[:, 16:]
  outs = [photowct.transfer(content, model=shallow, transforms=photowct.region_transforms(shallow, s, halves),
                            content_masks=content_halves) for s in (style, changed)]
  np.testing.assert_allclose(outs[1][:, :21], outs[0][:, :21], atol=1e-5)
  assert np.abs(outs[1][:, 27:] - outs[0][:, 27:]).mean() > 1e-3


def test_the_cascade_decodes_every_level_and_the_smoothing_lowers_the_matting_energy(model, images):
  content, style, _, _ = images
  result = photowct.stylize(content, style, model=model, levels=photowct.LEVELS)
  assert result.image.shape == content.shape and np.all(np.isfinite(result.image))
  assert result.smoothing_iterations > 0 and set(result.seconds) == {"transfer", "smoothing"}
  laplacian = matting.precompute(content)
  energy = [float(matting.matting_energy(image=x, laplacian=laplacian)) for x in (result.transferred, result.image)]
  assert energy[1] < 0.2 * energy[0]


def test_nearest_decoders_are_refused(weights):
  nearest = decoder_set(weights, ("relu2_1",))
  nearest.levels["relu2_1"].upsampling = "nearest"
  with pytest.raises(NSTError, match="no unpooling"):
    photowct.make_model(weights, nearest)


def test_photoreal_method_wct_command_writes_the_smoothed_result(cli_setup):
  """`photoreal --method wct` with maps: the written image is the library's result for the same inputs, and a
  nearest-upsampling decoder file is refused in one line."""
  root = cli_setup["root"]
  weights = load_weights(cli_setup["weights"])
  decoders = decoder_set(weights, photowct.LEVELS)
  wct_decoder.save_decoders(root / "photowct.npz", decoders, dtype="float32")
  write_seg(root / "pw_cseg.png", 24, 32)
  write_seg(root / "pw_sseg.png", 24, 32)
  output = root / "pw_out.png"
  args = ["photoreal", "--method", "wct", "--content", str(root / "content.png"), "--style", str(root / "style.png"),
          "--content_seg", str(root / "pw_cseg.png"), "--style_seg", str(root / "pw_sseg.png"), "--weights",
          str(cli_setup["weights"]), "--size", "32"]
  proc = run_cli(cli_setup, *args, "--decoders", str(root / "photowct.npz"), "--output", str(output))
  assert proc.returncode == 0, proc.stderr
  assert "PhotoWCT" in proc.stdout and "smoothing iterations" in proc.stdout
  expected = photowct.stylize_at_size(
      image_io.load_image(root / "content.png"), image_io.load_image(root / "style.png"), size=32,
      model=photowct.make_model(weights, wct_decoder.load_decoders(root / "photowct.npz")),
      content_seg=segmentation.load_map(root / "pw_cseg.png", what="map"),
      style_seg=segmentation.load_map(root / "pw_sseg.png", what="map")).image
  np.testing.assert_allclose(image_io.load_image(output), expected, atol=1.5 / 255)
  nearest = decoder_set(weights, ("relu2_1",))
  nearest.levels["relu2_1"].upsampling = "nearest"
  wct_decoder.save_decoders(root / "nearest.npz", nearest, dtype="float32")
  proc = run_cli(cli_setup, *args, "--decoders", str(root / "nearest.npz"), "--output", str(root / "pw_no.png"))
  assert_one_line_error(proc, "no unpooling")
  assert not (root / "pw_no.png").exists()
  for extra, needle in ((["--rounds", "0"], "--rounds"), (["--tile_size", "40"], "--tile_size with --method wct")):
    proc = run_cli(cli_setup, *args, "--decoders", str(root / "photowct.npz"), *extra, "--output",
                   str(root / "pw_no.png"))
    assert_one_line_error(proc, needle)
    assert not (root / "pw_no.png").exists()


def test_a_gray_target_gives_a_gray_result(model, images):
  """Random decoders leave colour everywhere; the region chroma step and the smoothing (one operator for all
  three channels) keep a gray target's result gray."""
  content, style, halves, _ = images
  gray = np.repeat(style.mean(axis=-1, keepdims=True), 3, axis=-1)
  plain = photowct.stylize(content, gray, model=model, region_chroma=False)
  result = photowct.stylize(content, gray, model=model)
  chroma = lambda x: np.abs(np.asarray(color.rgb_to_yiq(x))[..., 1:]).mean()
  assert chroma(plain.image) > 0.01
  assert chroma(result.image) < 1e-4


def test_region_chroma_takes_each_style_regions_chroma():
  rng = np.random.default_rng(5)
  image = rng.random((16, 20, 3)).astype(np.float32)
  style = np.zeros((16, 16, 3), np.float32)
  style[:, :8] = [0.8, 0.2, 0.2]
  style[:, 8:] = 0.5
  style += 0.05 * rng.standard_normal(style.shape).astype(np.float32)
  cm = np.zeros((2, 16, 20), np.float32)
  cm[0, :, :10], cm[1, :, 10:] = 1.0, 1.0
  sm = np.zeros((2, 16, 16), np.float32)
  sm[0, :, :8], sm[1, :, 8:] = 1.0, 1.0
  out = color.match_region_chroma(image, style, content_masks=cm, style_masks=sm)
  yiq = lambda x: np.asarray(color.rgb_to_yiq(x), np.float64)
  for k, (cols, scols) in enumerate(((slice(0, 10), slice(0, 8)), (slice(10, 20), slice(8, 16)))):
    got, want = yiq(out[:, cols]).reshape(-1, 3), yiq(style[:, scols]).reshape(-1, 3)
    np.testing.assert_allclose(got[:, 1:].mean(0), want[:, 1:].mean(0), atol=1e-5)
    np.testing.assert_allclose(got[:, 1:].std(0), want[:, 1:].std(0), rtol=1e-4)
    np.testing.assert_allclose(got[:, 0], yiq(image[:, cols]).reshape(-1, 3)[:, 0], atol=1e-5)  # luma kept


def test_tiles_whiten_with_the_whole_photos_statistics(model):
  """In tiles each level is whitened with the whole photo's moments and each tile unpools with its own switches:
  the result stays near the whole-image one, where the dark half run alone is normalised to another brightness."""
  rng = np.random.default_rng(8)
  content = rng.random((64, 128, 3)).astype(np.float32)
  content[:, :64] *= 0.2
  style = rng.random((48, 48, 3)).astype(np.float32)
  levels = ("relu2_1", "relu1_1")
  one = np.ones((1, 64, 128), np.float32)
  transforms = photowct.region_transforms(model, style, np.ones((1, 48, 48), np.float32), levels=levels)
  whole = photowct.transfer(content, model=model, transforms=transforms, content_masks=one, levels=levels)
  tiled = photowct.transfer(content, model=model, transforms=transforms, content_masks=one, levels=levels,
                            tiling=photowct.blend_tiles.Tiling(tile=64, overlap=16))
  alone = photowct.transfer(content[:, :64], model=model, transforms=transforms, content_masks=one[:, :, :64],
                            levels=levels)
  single = photowct.transfer(content, model=model, transforms=transforms, content_masks=one, levels=levels,
                             tiling=photowct.blend_tiles.Tiling(tile=128, overlap=16))
  np.testing.assert_allclose(single, whole, atol=2e-3)  # one tile: the tiled path (switches included) is exact
  # Random decoders amplify the tiles' border effects (measured 0.013 on average); alone, the dark half is 0.18 off.
  assert np.mean(np.abs(tiled - whole)) < 0.03
  assert np.mean(np.abs(alone - whole[:, :64])) > 5 * np.mean(np.abs(tiled[:, :64] - whole[:, :64]))


def test_a_second_round_restyles_the_first_rounds_smoothed_result(shallow, images):
  """`rounds=2` is the cascade, the chroma step and the smoothing (with the original photo's affinity) once more on
  the first round's result, composed here by hand."""
  content, style, halves, content_halves = images
  seg = dict(content_seg=None, style_seg=None)
  first = photowct.stylize(content, style, model=shallow, rounds=1, **seg)
  second = photowct.stylize(content, style, model=shallow, rounds=2, **seg)
  transforms = photowct.region_transforms(shallow, style, np.ones((1, 32, 32), np.float32))
  again = photowct.transfer(first.image, model=shallow, transforms=transforms,
                            content_masks=np.ones((1, 32, 48), np.float32))
  again = np.clip(color.match_region_chroma(again, style, content_masks=np.ones((1, 32, 48), np.float32),
                                            style_masks=np.ones((1, 32, 32), np.float32)), 0, 1)
  expected = np.clip(photowct.closed_form.smooth(stylized=again, content=content, lam=photowct.DEFAULT_LAMBDA).image,
                     0, 1)
  np.testing.assert_allclose(second.image, expected, atol=1e-5)
  assert np.abs(second.image - first.image).mean() > 1e-3
  with pytest.raises(NSTError, match="--rounds"):
    photowct.stylize(content, style, model=shallow, rounds=0)


def test_video_method_photowct_stylises_each_frame_as_the_library_does(cli_setup, tmp_path):
  """`video --method photowct --noconsistency`: every written frame is `photowct.stylize` of that frame with the
  style photo (8-bit); two style photos are refused in one line."""
  from nst_jax.io import video as video_io  # pylint: disable=import-outside-toplevel
  root = cli_setup["root"]
  weights = load_weights(cli_setup["weights"])
  wct_decoder.save_decoders(root / "photowct_video.npz", decoder_set(weights, ("relu2_1", "relu1_1")),
                            dtype="float32")
  rng = np.random.default_rng(9)
  frames = rng.random((2, 24, 32, 3)).astype(np.float32)
  video_io.write_frames(tmp_path / "frames", frames)
  frames = video_io.read_frames(tmp_path / "frames").frames
  args = ["video", "--method", "photowct", "--content", str(tmp_path / "frames"), "--weights",
          str(cli_setup["weights"]), "--decoders", str(root / "photowct_video.npz"), "--size", "32"]
  proc = run_cli(cli_setup, *args, "--style", str(root / "style.png"), "--noconsistency", "--output",
                 str(tmp_path / "out"))
  assert proc.returncode == 0, proc.stderr
  model = photowct.make_model(weights, wct_decoder.load_decoders(root / "photowct_video.npz"))
  style = image_io.resize_long_side(image_io.load_image(root / "style.png"), 32)
  written = video_io.read_frames(tmp_path / "out").frames
  for frame, out in zip(frames, written):
    np.testing.assert_allclose(out, photowct.stylize(frame, style, model=model).image, atol=1.5 / 255)
  proc = run_cli(cli_setup, *args, "--style", f"{root / 'style.png'},{root / 'style.png'}", "--output",
                 str(tmp_path / "two"))
  assert_one_line_error(proc, "one --style photo")
