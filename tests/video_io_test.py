"""Clips in and out (nst_jax/io/video.py): round trips through H.264 video, folders and patterns checked on pixel
values against the arrays written; the selection against NumPy slicing; every bad input one NSTError line with
nothing overwritten."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from nst_jax.errors import NSTError, NSTWarning
from nst_jax.io import video

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")


def smooth_clip(frames: int = 6, height: int = 32, width: int = 32) -> np.ndarray:
  """Slowly varying colours (what 4:2:0 chroma and H.264 keep nearly exactly), different in every frame."""
  y, x = np.mgrid[0:height, 0:width] / max(height, width)
  clip = [np.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y, np.full_like(x, 0.1 + 0.8 * t / frames)], -1)
          for t in range(frames)]
  return np.asarray(clip, np.float32)


def one_line_error(call, *needles: str) -> str:
  with pytest.raises(NSTError) as info:
    call()
  message = str(info.value)
  assert "\n" not in message
  for needle in needles:
    assert needle in message, message
  return message


def test_h264_round_trip_keeps_frames_and_frame_rate(tmp_path):
  clip = smooth_clip()
  path = video.write_frames(tmp_path / "clip.mp4", clip, fps=12.5)
  frames, fps = video.read_frames(path)
  assert fps == 12.5 and frames.shape == clip.shape and frames.dtype == np.float32
  # 4:2:0 colour and 8-bit YUV rounding: a few pixels off by up to 10 levels, the frames' means kept
  np.testing.assert_allclose(frames, clip, atol=0.05)
  np.testing.assert_allclose(frames.mean(axis=(1, 2, 3)), clip.mean(axis=(1, 2, 3)), atol=0.01)
  assert sorted(os.listdir(tmp_path)) == ["clip.mp4"]  # no temporary file left


@pytest.mark.parametrize("target", ["frames", "frames/%03d.png"])
def test_frames_round_trip_exactly_through_png(tmp_path, target):
  clip = np.random.default_rng(0).uniform(0, 1, (4, 20, 24, 3)).astype(np.float32)
  video.write_frames(tmp_path / target, clip)
  frames, fps = video.read_frames(tmp_path / target)
  assert fps is None
  np.testing.assert_array_equal(frames, np.round(clip * 255) / np.float32(255))
  names = sorted(os.listdir(tmp_path / "frames"))
  assert names == (["frame_00001.png", "frame_00002.png", "frame_00003.png", "frame_00004.png"]
                   if target == "frames" else ["001.png", "002.png", "003.png", "004.png"])


@pytest.mark.parametrize("start, stride, max_frames", [(0, 1, None), (1, 2, None), (2, 3, 1), (0, 2, 2)])
def test_selection_is_numpy_slicing(tmp_path, start, stride, max_frames):
  clip = smooth_clip(frames=7)
  video.write_frames(tmp_path / "v.mp4", clip, fps=10)
  video.write_frames(tmp_path / "f", clip)
  whole = video.read_frames(tmp_path / "v.mp4").frames
  expected = slice(start, None if max_frames is None else start + stride * max_frames, stride)
  for source, reference in ((tmp_path / "v.mp4", whole), (tmp_path / "f", np.round(clip * 255) / 255)):
    frames = video.read_frames(source, start=start, stride=stride, max_frames=max_frames).frames
    np.testing.assert_allclose(frames, reference[expected], atol=1e-6)


def test_folder_order_is_natural_and_hidden_files_are_skipped(tmp_path):
  for number in (1, 2, 10):
    Image.fromarray(np.full((8, 8, 3), number * 20, np.uint8)).save(tmp_path / f"f{number}.png")
  Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / ".f3.png.123.tmp.png")  # an unfinished write
  (tmp_path / "notes.txt").write_text("not a frame")
  frames = video.read_frames(tmp_path).frames
  np.testing.assert_allclose(frames[:, 0, 0, 0] * 255, [20, 40, 200], atol=1e-4)


def test_size_sets_the_long_side_and_keeps_a_flat_colour(tmp_path):
  clip = np.full((3, 30, 48, 3), [0.2, 0.5, 0.8], np.float32)
  video.write_frames(tmp_path / "f", clip)
  frames = video.read_frames(tmp_path / "f", size=24).frames
  assert frames.shape == (3, 15, 24, 3)
  np.testing.assert_allclose(frames, np.round(clip[:, :15, :24] * 255) / 255, atol=1e-5)


def test_one_frame_clip_works_like_an_image(tmp_path):
  clip = smooth_clip(frames=1)
  video.write_frames(tmp_path / "one.mp4", clip, fps=24)
  frames, fps = video.read_frames(tmp_path / "one.mp4")
  assert frames.shape == (1, 32, 32, 3) and fps == 24
  np.testing.assert_allclose(frames, clip, atol=0.05)
  video.write_frames(tmp_path / "one.png", clip)
  frames, fps = video.read_frames(tmp_path / "one.png")
  assert fps is None
  np.testing.assert_array_equal(frames, np.round(clip * 255) / np.float32(255))


def test_odd_sides_are_padded_by_repeating_the_edge_with_a_warning(tmp_path):
  clip = smooth_clip(frames=2, height=21, width=27)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    video.write_frames(tmp_path / "odd.mp4", clip, fps=5)
  assert [str(w.message) for w in caught if issubclass(w.category, NSTWarning)][0].count("28x22") == 1
  frames = video.read_frames(tmp_path / "odd.mp4").frames
  padded = np.pad(clip, ((0, 0), (0, 1), (0, 1), (0, 0)), mode="edge")
  assert frames.shape == padded.shape
  np.testing.assert_allclose(frames, padded, atol=0.05)


# ----------------------------------------------------------------------------------------------------------------
# Bad input: one line, nothing lost


def test_missing_empty_and_undecodable_videos(tmp_path):
  one_line_error(lambda: video.read_frames(tmp_path / "none.mp4"), "does not exist")
  (tmp_path / "empty.mp4").write_bytes(b"")
  one_line_error(lambda: video.read_frames(tmp_path / "empty.mp4"), "empty file")
  (tmp_path / "junk.mp4").write_bytes(os.urandom(2000))
  one_line_error(lambda: video.read_frames(tmp_path / "junk.mp4"), "could not be read as a video", "ffmpeg:")
  (tmp_path / "text.mkv").write_text("hello " * 100)
  one_line_error(lambda: video.read_frames(tmp_path / "text.mkv", what="style"), "style", "text.mkv")


def test_a_video_with_no_frames_is_refused(tmp_path):
  path = tmp_path / "silent.mp4"
  subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "anullsrc", "-t", "0.2",
                  "-c:a", "aac", str(path)], check=True)
  one_line_error(lambda: video.read_frames(path), "silent.mp4")


def test_folders_with_different_sizes_or_no_images_are_refused(tmp_path):
  (tmp_path / "mixed").mkdir()
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "mixed" / "a.png")
  Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(tmp_path / "mixed" / "b.png")
  one_line_error(lambda: video.read_frames(tmp_path / "mixed"), "differ in size", "8x8", "9x8")
  (tmp_path / "none").mkdir()
  one_line_error(lambda: video.read_frames(tmp_path / "none"), "no image files")
  one_line_error(lambda: video.read_frames(tmp_path / "mixed" / "x_%04d.png"), "matches the pattern")


def test_selection_past_the_end_and_bad_arguments(tmp_path):
  video.write_frames(tmp_path / "f", smooth_clip(frames=3))
  one_line_error(lambda: video.read_frames(tmp_path / "f", start=3), "start 3", "3 frames")
  for arguments in ({"start": -1}, {"stride": 0}, {"max_frames": 0}, {"size": 0}):
    one_line_error(lambda a=arguments: video.read_frames(tmp_path / "f", **a), next(iter(arguments)))


def test_unknown_containers_are_refused_before_writing(tmp_path):
  for name in ("clip.xyz", "clip.flv"):
    one_line_error(lambda n=name: video.write_frames(tmp_path / n, smooth_clip()), "unknown video container",
                   ".mp4")
  one_line_error(lambda: video.write_frames(tmp_path / "one.png", smooth_clip()), "one image", "6 frames")
  assert os.listdir(tmp_path) == []


def test_outputs_that_would_overwrite_the_input_are_refused(tmp_path):
  clip = smooth_clip(frames=2)
  source = video.write_frames(tmp_path / "in.mp4", clip, fps=5)
  before = source.read_bytes()
  one_line_error(lambda: video.write_frames(source, clip[::-1], source=source), "overwrite the input")
  os.link(source, tmp_path / "hard.mp4")
  one_line_error(lambda: video.write_frames(tmp_path / "hard.mp4", clip, source=source), "overwrite the input")
  assert source.read_bytes() == before
  video.write_frames(tmp_path / "frames", clip)
  for target in ("frames", "frames/%04d.png", "frames/out.mp4", "frames/frame_00001.png"):
    one_line_error(lambda t=target: video.check_output(tmp_path / t, source=tmp_path / "frames"), "input folder")
  image = tmp_path / "frames" / "frame_00001.png"
  one_line_error(lambda: video.check_output(tmp_path / "frames", source=image), "overwrite the input")
  one_line_error(lambda: video.check_output(tmp_path / "frames" / "frame_%05d.png", source=image), "overwrite")
  video.check_output(tmp_path / "elsewhere" / "%04d.png", source=tmp_path / "frames")  # allowed


def test_a_failed_write_keeps_the_existing_output(tmp_path):
  target = tmp_path / "out.mp4"
  target.write_bytes(b"an earlier result")
  one_line_error(lambda: video.write_frames(target, smooth_clip(), fps=0), "frame rate")
  one_line_error(lambda: video.write_frames(target, [np.zeros((4, 4, 3)), np.zeros((4, 6, 3))]), "one size")
  assert target.read_bytes() == b"an earlier result" and sorted(os.listdir(tmp_path)) == ["out.mp4"]


def test_without_imageio_ffmpeg_the_message_says_what_to_install(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import then raises ImportError
  one_line_error(lambda: video.write_frames(tmp_path / "x.mp4", smooth_clip(), fps=5),
                 "pip install 'nst_jax[video]'")
  assert os.listdir(tmp_path) == []
