"""Loading odd image files, resizing and atomic 8/16-bit saving, checked on pixel values.

Every input is built here with Pillow/NumPy in tmp_path. The 16-bit outputs are decoded by small independent PNG
and TIFF readers written for this test, so an encoder bug cannot hide behind a matching decoder bug.
"""

from __future__ import annotations

import io
import os
import pathlib
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from nst_jax.io import image_io
from nst_jax.errors import NSTError


# ----------------------------------------------------------------------------------------------------------------
# Independent decoders for the 16-bit files


def _decode_png16(data: bytes) -> np.ndarray:
  """A 16-bit truecolour PNG -> (H, W, 3) uint16, checking signature, CRCs and undoing all five row filters."""
  assert data[:8] == b"\x89PNG\r\n\x1a\n"
  pos, idat, header = 8, b"", None
  while pos < len(data):
    (length,) = struct.unpack(">I", data[pos:pos + 4])
    tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
    (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
    assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF, f"bad CRC in {tag!r}"
    if tag == b"IHDR":
      header = struct.unpack(">IIBBBBB", body)
    elif tag == b"IDAT":
      idat += body
    elif tag == b"IEND":
      break
    pos += 12 + length
  assert header is not None
  width, height, depth, colour, _, _, interlace = header
  assert (depth, colour, interlace) == (16, 2, 0)
  bpp, stride = 6, width * 6
  raw = zlib.decompress(idat)
  assert len(raw) == height * (stride + 1)
  rows, prev = [], bytearray(stride)
  for y in range(height):
    kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
      a = line[i - bpp] if i >= bpp else 0
      b = prev[i]
      c = prev[i - bpp] if i >= bpp else 0
      if kind == 1:
        line[i] = (line[i] + a) & 0xFF
      elif kind == 2:
        line[i] = (line[i] + b) & 0xFF
      elif kind == 3:
        line[i] = (line[i] + (a + b) // 2) & 0xFF
      elif kind == 4:
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
      else:
        assert kind == 0, f"unknown filter {kind}"
    rows.append(bytes(line))
    prev = line
  return np.frombuffer(b"".join(rows), dtype=">u2").reshape(height, width, 3).astype(np.uint16)


def _decode_tiff16(data: bytes) -> np.ndarray:
  """An uncompressed, chunky, 16-bit RGB baseline TIFF (either byte order) -> (H, W, 3) uint16."""
  order = {b"II": "<", b"MM": ">"}[data[:2]]
  assert struct.unpack(order + "H", data[2:4])[0] == 42
  (ifd,) = struct.unpack(order + "I", data[4:8])
  (count,) = struct.unpack(order + "H", data[ifd:ifd + 2])
  sizes = {3: ("H", 2), 4: ("I", 4)}
  tags = {}
  for k in range(count):
    tag, typ, n = struct.unpack(order + "HHI", data[ifd + 2 + 12 * k:ifd + 10 + 12 * k])
    code, size = sizes[typ]
    where = ifd + 10 + 12 * k
    if n * size > 4:
      (where,) = struct.unpack(order + "I", data[where:where + 4])
    tags[tag] = struct.unpack(order + code * n, data[where:where + n * size])
  width, height = tags[256][0], tags[257][0]
  assert tags[258] == (16, 16, 16) and tags[259] == (1,) and tags[262] == (2,) and tags[277] == (3,)
  assert tags.get(284, (1,)) == (1,)
  pixels = b"".join(data[o:o + n] for o, n in zip(tags[273], tags[279]))
  return np.frombuffer(pixels, dtype=order + "u2").reshape(height, width, 3).astype(np.uint16)


# ----------------------------------------------------------------------------------------------------------------
# Loading: colour modes


def test_grayscale_becomes_three_equal_channels(tmp_path):
  gray = np.array([[0, 17, 128], [200, 254, 255]], dtype=np.uint8)
  Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
  out = image_io.load_image(tmp_path / "g.png")
  assert out.shape == (2, 3, 3) and out.dtype == np.float32
  for c in range(3):
    np.testing.assert_array_equal(out[..., c], gray.astype(np.float32) / 255.0)


def test_16bit_grayscale_png_keeps_16bit_precision(tmp_path):
  values = np.array([[1000, 1001, 1], [65535, 32768, 0]], dtype=np.uint16)
  Image.fromarray(values).save(tmp_path / "g16.png")
  assert Image.open(tmp_path / "g16.png").mode.startswith("I")  # really stored as 16-bit
  out = image_io.load_image(tmp_path / "g16.png")
  np.testing.assert_allclose(out, np.repeat(values[..., None] / 65535.0, 3, axis=-1), atol=1e-6, rtol=0)
  assert out[0, 1, 0] > out[0, 0, 0]  # 1000 and 1001 would collapse to one 8-bit level


def test_dark_16bit_pgm_is_not_mistaken_for_8bit(tmp_path):
  # Pillow reads 16-bit PGM as mode "I"; with every sample <= 255 a max-based guess would call it 8-bit.
  samples = np.array([[200, 100, 0]], dtype=">u2")
  (tmp_path / "dark.pgm").write_bytes(b"P5\n3 1\n65535\n" + samples.tobytes())
  out = image_io.load_image(tmp_path / "dark.pgm")
  np.testing.assert_allclose(out[0, :, 0], [200 / 65535, 100 / 65535, 0.0], atol=1e-7)


def test_rgba_is_composited_over_white(tmp_path):
  rgba = np.array([[[255, 0, 0, 255], [255, 0, 0, 128], [0, 0, 255, 0], [0, 102, 0, 51]]], dtype=np.uint8)
  Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
  out = image_io.load_image(tmp_path / "a.png")
  a = 128 / 255
  expected = np.array([[[1, 0, 0], [1, 1 - a, 1 - a], [1, 1, 1], [0.8, 0.2 * 0.4 + 0.8, 0.8]]], dtype=np.float32)
  np.testing.assert_allclose(out, expected, atol=1e-6)


def test_la_is_composited_over_white(tmp_path):
  la = np.array([[[100, 255], [100, 0], [100, 51]]], dtype=np.uint8)
  Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
  out = image_io.load_image(tmp_path / "la.png")
  g = 100 / 255
  np.testing.assert_allclose(out[0, :, 0], [g, 1.0, 0.2 * g + 0.8], atol=1e-6)
  np.testing.assert_array_equal(out[..., 0], out[..., 2])


@pytest.mark.parametrize("transparent", [False, True])
def test_palette_image(tmp_path, transparent):
  palette = [255, 0, 0, 0, 0, 255, 10, 200, 30] + [0] * (256 * 3 - 9)
  p = Image.fromarray(np.array([[0, 1, 2, 1]], dtype=np.uint8), mode="P")
  p.putpalette(palette)
  kwargs = {"transparency": 1} if transparent else {}
  p.save(tmp_path / "p.png", **kwargs)
  out = image_io.load_image(tmp_path / "p.png")
  blue = [1, 1, 1] if transparent else [0, 0, 1]  # the transparent entry shows the white background
  expected = np.array([[[1, 0, 0], blue, [10 / 255, 200 / 255, 30 / 255], blue]], dtype=np.float32)
  np.testing.assert_allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("cmyk", [(0, 255, 255, 0), (100, 50, 0, 40), (0, 0, 0, 128)])
def test_cmyk_jpeg_gives_the_expected_rgb(tmp_path, cmyk):
  Image.new("CMYK", (16, 16), cmyk).save(tmp_path / "c.jpg", quality=95)
  assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
  out = image_io.load_image(tmp_path / "c.jpg")
  c, m, y, k = (v / 255 for v in cmyk)
  expected = np.array([(1 - c) * (1 - k), (1 - m) * (1 - k), (1 - y) * (1 - k)])
  assert out.shape == (16, 16, 3)
  np.testing.assert_allclose(out.reshape(-1, 3).mean(axis=0), expected, atol=3 / 255)


def test_one_bit_image(tmp_path):
  bits = Image.new("1", (3, 2), 0)
  bits.putpixel((1, 0), 1)
  bits.putpixel((2, 1), 1)
  bits.save(tmp_path / "b.png")
  out = image_io.load_image(tmp_path / "b.png")
  np.testing.assert_array_equal(out[..., 0], [[0, 1, 0], [0, 0, 1]])
  np.testing.assert_array_equal(out[..., 0], out[..., 1])


def test_animated_gif_gives_the_first_frame(tmp_path):
  frames = [Image.new("RGB", (8, 6), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
  frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
  assert Image.open(tmp_path / "anim.gif").n_frames == 3
  out = image_io.load_image(tmp_path / "anim.gif")
  assert out.shape == (6, 8, 3)
  np.testing.assert_allclose(out, np.broadcast_to([1.0, 0.0, 0.0], out.shape), atol=1 / 255)


# ----------------------------------------------------------------------------------------------------------------
# Loading: EXIF orientation


@pytest.mark.parametrize("orientation, rot90_k, red_corner", [(6, -1, "top-right"), (8, 1, "bottom-left")])
def test_exif_orientation_is_applied(tmp_path, orientation, rot90_k, red_corner):
  stored = np.full((20, 40, 3), 255, dtype=np.uint8)  # 40 wide, 20 tall; red block in the stored top-left
  stored[:8, :8] = (255, 0, 0)
  exif = Image.Exif()
  exif[0x0112] = orientation
  Image.fromarray(stored).save(tmp_path / "rotated.jpg", quality=95, exif=exif)
  Image.fromarray(stored).save(tmp_path / "plain.jpg", quality=95)
  out = image_io.load_image(tmp_path / "rotated.jpg")
  assert out.shape == (40, 20, 3)
  # Same JPEG data without the tag, decoded and rotated by numpy: the transpose must be lossless and exact.
  plain = image_io.load_image(tmp_path / "plain.jpg")
  np.testing.assert_array_equal(out, np.rot90(plain, k=rot90_k))
  corners = {"top-left": out[:6, :6], "top-right": out[:6, -6:], "bottom-left": out[-6:, :6],
             "bottom-right": out[-6:, -6:]}
  for name, block in corners.items():
    is_red = block[..., 0].mean() > 0.9 and block[..., 1].mean() < 0.1
    assert is_red == (name == red_corner), (name, block.mean(axis=(0, 1)))


# ----------------------------------------------------------------------------------------------------------------
# Loading: files that are not usable images


def _encoded(fmt: str, seed: int) -> bytes:
  """A 32x32 noise image encoded in memory (noise, so that truncation always cuts pixel data)."""
  buf = io.BytesIO()
  Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format=fmt)
  return buf.getvalue()


def _png_bytes() -> bytes:
  return _encoded("PNG", 0)


def _jpeg_bytes() -> bytes:
  return _encoded("JPEG", 1)


def _tiff_with_fractional_strip_offset() -> bytes:
  """A 2x2 grayscale TIFF whose StripOffsets tag is a RATIONAL: Pillow raises TypeError, not OSError, on it."""
  entries = [(256, 2), (257, 2), (258, 8), (259, 1), (262, 1), (277, 1), (278, 2), (279, 4)]
  count = len(entries) + 1
  rational_at = 8 + 2 + 12 * count + 4
  data_at = rational_at + 8
  ifd = [struct.pack("<HHIHH", tag, 3, 1, value, 0) for tag, value in entries]
  ifd.insert(5, struct.pack("<HHII", 273, 5, 1, rational_at))  # tags must stay sorted
  return (b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", count) + b"".join(ifd) + struct.pack("<I", 0)
          + struct.pack("<II", data_at, 1) + bytes([10, 20, 30, 40]))


@pytest.mark.parametrize("kind", ["text", "empty", "missing", "directory", "truncated-png", "truncated-jpeg",
                                  "png-header-only", "corrupt-tiff"])
def test_unusable_files_raise_nst_error_naming_the_path(tmp_path, kind):
  path = tmp_path / f"input-{kind}.img"
  if kind == "text":
    path.write_text("this is not an image\n" * 10)
  elif kind == "empty":
    path.write_bytes(b"")
  elif kind == "directory":
    path.mkdir()
  elif kind == "truncated-png":
    data = _png_bytes()
    path.write_bytes(data[:len(data) // 2])
  elif kind == "truncated-jpeg":
    data = _jpeg_bytes()
    path.write_bytes(data[:len(data) // 2])
  elif kind == "png-header-only":
    path.write_bytes(_png_bytes()[:33])  # signature + IHDR, no pixel data
  elif kind == "corrupt-tiff":
    path.write_bytes(_tiff_with_fractional_strip_offset())
  with pytest.raises(NSTError) as info:
    image_io.load_image(path, what="style image")
  message = str(info.value)
  assert str(path) in message and message.startswith("style image")
  assert "\n" not in message


def test_every_truncation_of_png_and_jpeg_is_an_nst_error_or_an_image(tmp_path):
  """No cut-off point may leak a raw Pillow exception (which the CLI would show as a traceback)."""
  outcomes = {"error": 0, "image": 0}
  for name, data in (("t.png", _png_bytes()), ("t.jpg", _jpeg_bytes())):
    for n in range(1, len(data), max(1, len(data) // 60)):
      (tmp_path / name).write_bytes(data[:n])
      try:
        out = image_io.load_image(tmp_path / name)
        assert out.shape == (32, 32, 3) and np.isfinite(out).all()
        outcomes["image"] += 1
      except NSTError:
        outcomes["error"] += 1
  assert outcomes["error"] > 100  # nearly every cut must be refused


# ----------------------------------------------------------------------------------------------------------------
# Resizing


@pytest.mark.parametrize("shape, size, expected", [
    ((300, 400), 512, (384, 512)),       # landscape, upscaled
    ((400, 300, 3), 512, (512, 384)),    # portrait, with a channel axis
    ((1000, 1000), 64, (64, 64)),
    ((3, 1000), 16, (1, 16)),            # would round to 0 rows
    ((1000, 2), 16, (16, 1)),
    ((1, 1), 7, (7, 7)),
])
def test_long_side_shape(shape, size, expected):
  assert image_io.long_side_shape(shape, size) == expected


@pytest.mark.parametrize("value", [0.0, 0.3, 0.5, 0.123456, 1.0])
@pytest.mark.parametrize("target", [(10, 13), (100, 200), (37, 20), (1, 1)])
def test_resize_preserves_a_constant_image_exactly(value, target):
  image = np.full((37, 53, 3), value, dtype=np.float32)
  out = image_io.resize(image, *target)
  assert out.shape == (*target, 3) and out.dtype == np.float32
  np.testing.assert_array_equal(out, np.float32(value))


def test_resize_keeps_values_in_range_and_means():
  # A hard-edged checkerboard makes Lanczos overshoot; the result must still be clipped to [0, 1].
  image = np.kron((np.indices((8, 8)).sum(axis=0) % 2).astype(np.float32), np.ones((5, 5)))[..., None]
  image = np.repeat(image, 3, axis=-1)
  for target in ((97, 97), (13, 17), (40, 40)):
    out = image_io.resize(image, *target)
    assert out.shape == (*target, 3)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert abs(out.mean() - 0.5) < 0.05
  big = image_io.resize_long_side(image, 80)
  assert big.shape == (80, 80, 3)


# ----------------------------------------------------------------------------------------------------------------
# Saving


def _random_image(h: int = 9, w: int = 11, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).uniform(0, 1, (h, w, 3)).astype(np.float32)


def test_8bit_png_round_trip_is_exact_to_rounding(tmp_path):
  image = _random_image()
  image[0, 0] = (0.0, 1.0, 0.5)
  path = image_io.save_image(tmp_path / "x.png", image)
  stored = np.asarray(Image.open(path))
  np.testing.assert_array_equal(stored, np.round(image * 255).astype(np.uint8))
  np.testing.assert_array_equal(image_io.load_image(path), stored.astype(np.float32) / 255)


def test_save_clips_and_removes_nan(tmp_path):
  image = np.array([[[-0.5, 1.7, np.nan]]], dtype=np.float32)
  stored = np.asarray(Image.open(image_io.save_image(tmp_path / "c.png", image)))
  np.testing.assert_array_equal(stored, [[[0, 255, 0]]])


def test_jpeg_round_trip_is_close(tmp_path):
  y, x = np.mgrid[0:32, 0:48] / 48.0
  image = np.stack([x, y, 0.5 * (x + y)], axis=-1).astype(np.float32)  # smooth, so JPEG keeps it well
  out = image_io.load_image(image_io.save_image(tmp_path / "x.jpg", image))
  assert out.shape == image.shape
  assert np.abs(out - image).max() < 0.04 and np.abs(out - image).mean() < 0.01


@pytest.mark.parametrize("suffix, decode", [(".png", _decode_png16), (".tif", _decode_tiff16),
                                            (".TIFF", _decode_tiff16)])
def test_16bit_save_is_decoded_independently(tmp_path, suffix, decode):
  image = _random_image(7, 13)
  image[0, :3] = [[0, 0, 0], [1, 1, 1], [1 / 65535, 2 / 65535, 65534 / 65535]]
  path = image_io.save_image(tmp_path / f"x16{suffix}", image, bits=16)
  expected = np.round(image * np.float32(65535)).astype(np.uint16)  # in float32, like the writer
  np.testing.assert_array_equal(decode(path.read_bytes()), expected)
  # Pillow reads 48-bit files as 8-bit RGB, taking the high byte of each sample: a second, unrelated decoder.
  with Image.open(path) as im:
    assert im.size == (13, 7)
    np.testing.assert_array_equal(np.asarray(im.convert("RGB")), (expected >> 8).astype(np.uint8))
  # Half an 8-bit level apart must survive in 16 bits.
  assert len(np.unique(decode(path.read_bytes()))) > 256


class _EncoderFailure(Exception):
  pass


@pytest.mark.parametrize("failure", ["encoder", "disk-full", "interrupt", "rename"])
def test_failed_save_leaves_the_previous_file_and_no_temp_files(tmp_path, monkeypatch, failure):
  target = tmp_path / "out.png"
  target.write_bytes(b"previous result")
  bits = 16 if failure == "rename" else 8
  raised: type[BaseException]
  if failure == "rename":
    raised = NSTError  # an OSError from the rename is reported as a user-facing error

    def broken_replace(src, dst):
      raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(image_io.os, "replace", broken_replace)
  else:
    error = {"encoder": _EncoderFailure("boom"), "disk-full": OSError(28, "No space left on device"),
             "interrupt": KeyboardInterrupt()}[failure]
    raised = {"encoder": _EncoderFailure, "disk-full": NSTError, "interrupt": KeyboardInterrupt}[failure]

    def broken_save(self, fp, *args, **kwargs):
      fp.write(b"\x89PNG\r\n\x1a\n half an image")  # something reached the disk before the failure
      raise error
    monkeypatch.setattr(Image.Image, "save", broken_save)
  with pytest.raises(raised) as info:
    image_io.save_image(target, _random_image(), bits=bits)
  if raised is NSTError:
    assert str(target) in str(info.value)
  assert target.read_bytes() == b"previous result"
  assert sorted(os.listdir(tmp_path)) == ["out.png"]


def test_save_replaces_an_existing_file(tmp_path):
  target = tmp_path / "out.png"
  target.write_bytes(b"previous result")
  image_io.save_image(target, np.zeros((2, 3, 3), np.float32))
  assert np.asarray(Image.open(target)).shape == (2, 3, 3)
  assert sorted(os.listdir(tmp_path)) == ["out.png"]


def test_save_creates_missing_folders(tmp_path):
  path = image_io.save_image(tmp_path / "a" / "b" / "x.png", np.ones((2, 2, 3), np.float32))
  assert np.asarray(Image.open(path)).min() == 255


@pytest.mark.parametrize("name, bits, needle", [
    ("x.gifx", 8, "unknown image extension"),
    ("noextension", 8, "unknown image extension"),
    ("x.jpg", 16, "cannot hold 16-bit"),
    ("x.bmp", 16, "cannot hold 16-bit"),
    ("folder.png", 8, "is a folder"),
    ("blocker.txt/x.png", 8, "is a file, not a folder"),
    ("blocker.txt/deeper/x.png", 8, "is a file, not a folder"),
])
def test_bad_output_paths_are_refused_before_writing(tmp_path, name, bits, needle):
  (tmp_path / "folder.png").mkdir()
  (tmp_path / "blocker.txt").write_text("in the way")
  before = sorted(p.name for p in tmp_path.iterdir())
  with pytest.raises(NSTError, match=needle) as info:
    image_io.check_output_path(tmp_path / name, bits=bits)
  assert str(tmp_path) in str(info.value)
  with pytest.raises(NSTError, match=needle):
    image_io.save_image(tmp_path / name, np.zeros((2, 2, 3), np.float32), bits=bits)
  assert sorted(p.name for p in tmp_path.iterdir()) == before
  assert (tmp_path / "blocker.txt").read_text() == "in the way"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder_is_refused_up_front(tmp_path):
  folder = tmp_path / "ro"
  folder.mkdir()
  folder.chmod(0o555)
  try:
    with pytest.raises(NSTError, match="not writable"):
      image_io.check_output_path(folder / "sub" / "x.png")
  finally:
    folder.chmod(0o755)


def test_directory_path_is_refused(tmp_path):
  with pytest.raises(NSTError) as info:
    image_io.save_image(tmp_path, np.zeros((2, 2, 3), np.float32))
  assert str(tmp_path) in str(info.value)


def test_returned_path_is_the_written_file(tmp_path):
  path = image_io.save_image(str(tmp_path / "s.webp"), _random_image())
  assert isinstance(path, pathlib.Path) and path.is_file()
  assert Image.open(path).format == "WEBP"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("bits", [8, 16])
def test_saved_file_has_ordinary_permissions(tmp_path, bits):
  # A private (0600) temp file renamed into place would leave an image that only its owner can read.
  umask = os.umask(0o022)
  try:
    path = image_io.save_image(tmp_path / "shared.png", _random_image(), bits=bits)
  finally:
    os.umask(umask)
  assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_huge_images_are_refused_on_any_thread_without_touching_warning_filters(tmp_path, monkeypatch):
  """Between MAX_IMAGE_PIXELS and twice that, Pillow only warns; the explicit size check refuses the image on the
  main thread and on decoding threads alike, and a decoding thread leaves the process-wide warning filters as
  they were (catch_warnings is not thread-safe)."""
  import concurrent.futures  # pylint: disable=import-outside-toplevel
  import warnings  # pylint: disable=import-outside-toplevel
  path = tmp_path / "big.png"
  Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(path)
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 3072 pixels: over the limit, under twice it
  with pytest.raises(NSTError, match="too large to decode safely"):
    image_io.load_image(path)
  filters = list(warnings.filters)
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    with pytest.raises(NSTError, match="too large to decode safely"):
      pool.submit(image_io.load_image, path).result()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    assert pool.submit(image_io.load_image, path).result().shape == (48, 64, 3)
  assert warnings.filters == filters
