"""Reading, resizing and atomically writing images as float32 RGB arrays in [0, 1].

Every way an input file can be odd (not an image, truncated, palette, grayscale, alpha, CMYK, 16-bit, EXIF
rotation, animated, too small to carry structure) is either handled here or turned into a one-line `NSTError`;
a guide or map stretched to another aspect ratio gets a one-line `NSTWarning`.

Pillow is imported where it is used: an array that already has the size asked for never needs it, which lets
experiments.benchmarks.gpu_suite run on a machine with JAX but without Pillow.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import threading
import warnings

import numpy as np

from nst_jax.io import atomic
from nst_jax.errors import NSTError, NSTWarning

MIN_SIDE = 16  # smaller contents carry no structure for VGG (four poolings) and are refused
ASPECT_TOLERANCE = 0.02  # relative difference of aspect ratios that counts as "the same" (off-by-one maps)

# Extensions we can write, mapped to Pillow format names and the bit depths each supports.
_WRITERS = {
    ".png": ("PNG", (8, 16)),
    ".jpg": ("JPEG", (8,)),
    ".jpeg": ("JPEG", (8,)),
    ".tif": ("TIFF", (8, 16)),
    ".tiff": ("TIFF", (8, 16)),
    ".bmp": ("BMP", (8,)),
    ".webp": ("WEBP", (8,)),
}


def load_image(path: str | os.PathLike, *, what: str = "image") -> np.ndarray:
  """Reads `path` as an (H, W, 3) float32 RGB array in [0, 1], upright according to its EXIF orientation.

  Grayscale is replicated to three channels, alpha is composited over white, CMYK/palette/LAB are converted,
  16-bit grayscale keeps its precision. `what` names the file in error messages ("content image", ...); an
  unreadable or unusable file raises `NSTError`."""
  path = pathlib.Path(path)
  if not path.exists():
    raise NSTError(f"{what} {str(path)!r} does not exist")
  if path.is_dir():
    raise NSTError(f"{what} {str(path)!r} is a directory, not an image file")
  if path.stat().st_size == 0:
    raise NSTError(f"{what} {str(path)!r} is an empty file")
  # Pillow's metadata complaints ("Tag data larger than file", ...) would be stray stderr lines for the user. The
  # warning filters are process-wide and catch_warnings is not thread-safe, so they are only touched on the main
  # thread (the CLI); decoding threads (AdaIN training) leave them alone. Either way a huge image is refused by the
  # explicit size check, not by the bomb warning's filter.
  from PIL import Image, ImageOps, UnidentifiedImageError  # pylint: disable=import-outside-toplevel
  on_main = threading.current_thread() is threading.main_thread()
  try:
    with warnings.catch_warnings() if on_main else contextlib.nullcontext():
      if on_main:
        warnings.simplefilter("ignore")
      with Image.open(path) as im:
        if Image.MAX_IMAGE_PIXELS and im.width * im.height > Image.MAX_IMAGE_PIXELS:
          raise Image.DecompressionBombError(f"{im.width}x{im.height} pixels exceeds the limit of "
                                             f"{Image.MAX_IMAGE_PIXELS}")
        im.seek(0)  # first frame of animations
        im = ImageOps.exif_transpose(im)
        image = _to_rgb_float(im)
  except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
    raise NSTError(f"{what} {str(path)!r} is too large to decode safely ({e})") from None
  except UnidentifiedImageError:
    raise NSTError(f"{what} {str(path)!r} is not an image file Pillow can read") from None
  except NSTError as e:
    raise NSTError(f"{what} {str(path)!r} {e}") from None
  except MemoryError:
    raise  # a valid but huge image: not the file's fault, and the CLI reports it as such
  except Exception as e:  # pylint: disable=broad-except
    # Truncated or corrupt data surfaces as OSError, SyntaxError, ValueError, EOFError, but also as TypeError or
    # struct.error from deep inside Pillow's plugins (e.g. a TIFF whose StripOffsets tag is a fraction).
    raise NSTError(f"{what} {str(path)!r} could not be decoded: {type(e).__name__}: {e}") from None
  return image


def _to_rgb_float(im) -> np.ndarray:
  if im.width == 0 or im.height == 0:
    raise ValueError("image has zero width or height")
  if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
    return _gray_to_rgb(np.asarray(im, dtype=np.float32) / 65535.0)
  if im.mode == "I":
    # A 32-bit container that Pillow fills with 16-bit samples scaled to 0..65535 (16-bit PGM/PPM, older Pillows'
    # 16-bit PNG). Guessing 8-bit from the maximum would turn a dark 16-bit image (all values <= 255) into a
    # bright one, so the scale is always 16-bit; wider integer data is clipped.
    arr = np.asarray(im, dtype=np.float64)
    return _gray_to_rgb(np.clip(arr / 65535.0, 0, 1).astype(np.float32))
  if im.mode == "F":
    arr = np.asarray(im, dtype=np.float32)
    if not np.isfinite(arr).all():  # float TIFFs can hold them: clipped, they would pass for black or white
      raise NSTError("has NaN or infinite pixel values; save it with finite values")
    top = 255.0 if arr.max(initial=0) > 1.0 else 1.0
    return _gray_to_rgb(np.clip(arr / top, 0, 1))
  if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
    rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    alpha = rgba[..., 3:]
    return rgba[..., :3] * alpha + (1.0 - alpha)  # over white
  return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
  return np.repeat(gray[..., None], 3, axis=-1).astype(np.float32)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """Antialiased (Lanczos) resize of an (H, W, C) float image, channel by channel in float precision."""
  if image.shape[:2] == (height, width):
    return image.astype(np.float32)
  from PIL import Image  # pylint: disable=import-outside-toplevel
  channels = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32), mode="F")
                         .resize((width, height), Image.Resampling.LANCZOS))
              for c in range(image.shape[-1])]
  return np.clip(np.stack(channels, axis=-1), 0.0, 1.0)


def long_side_shape(shape: tuple[int, ...], size: int) -> tuple[int, int]:
  """(height, width) with the longer side equal to `size`, keeping the aspect ratio (each side >= 1)."""
  h, w = shape[:2]
  scale = size / max(h, w)
  return max(1, round(h * scale)), max(1, round(w * scale))


def resize_long_side(image: np.ndarray, size: int) -> np.ndarray:
  """`image` resized (`resize`) so that its longer side is `size`, keeping the aspect ratio."""
  return resize(image, *long_side_shape(image.shape, size))


def check_min_size(image: np.ndarray, *, what: str, minimum: int = MIN_SIDE) -> np.ndarray:
  """`image` itself, unless a side is shorter than `minimum` pixels: then `NSTError`.

  Resized up to the output size, so small an image would be a blur of a few pixels."""
  h, w = image.shape[:2]
  if min(h, w) < minimum:
    raise NSTError(f"{what} is {w}x{h} px: too small to stylize; it needs at least {minimum} px on each side")
  return image


def warn_if_stretched(shape: tuple[int, ...], target: tuple[int, ...], *, what: str,
                      target_name: str = "the content") -> None:
  """An `NSTWarning` when an (H, W) guide resized to `target` changes its aspect ratio by more than `ASPECT_TOLERANCE`.

  It works, but regions land elsewhere than drawn."""
  (h, w), (th, tw) = shape[:2], target[:2]
  if abs((w / h) / (tw / th) - 1) > ASPECT_TOLERANCE:
    warnings.warn(NSTWarning(f"{what} is {w}x{h} px, another aspect ratio than {target_name}'s {tw}x{th}: it is "
                             f"stretched to fit"), stacklevel=2)


def check_output_path(path: str | os.PathLike, *, bits: int = 8) -> pathlib.Path:
  """Validates an output path before any work is done: known extension, bit depth, writable folder.

  Returns the path; raises `NSTError` naming what is wrong."""
  path = pathlib.Path(path)
  if path.is_dir():
    raise NSTError(f"output {str(path)!r} is a folder; give an image file path, e.g. {str(path / 'out.png')!r}")
  ext = path.suffix.lower()
  if ext not in _WRITERS:
    raise NSTError(f"output {str(path)!r}: unknown image extension {ext or '(none)'!r}; use one of "
                   f"{', '.join(sorted(_WRITERS))}")
  if bits not in _WRITERS[ext][1]:
    raise NSTError(f"output {str(path)!r}: {ext} cannot hold {bits}-bit images; use .png or .tif")
  # Missing folders are created at save time, so check the nearest one that exists: a file in the way
  # (out.txt/result.png) or a read-only ancestor would otherwise only fail after the whole optimisation.
  folder = path.absolute().parent
  while not folder.exists() and folder != folder.parent:
    folder = folder.parent
  if not folder.is_dir():
    raise NSTError(f"output {str(path)!r}: {str(folder)!r} is a file, not a folder")
  if not os.access(folder, os.W_OK):
    raise NSTError(f"output folder {str(folder)!r} is not writable")
  return path


# How many images this process has saved, and the last one: what an interrupted command reports.
_saved: dict = {"count": 0, "last": None}


def saved_images() -> tuple[int, pathlib.Path | None]:
  """(number of images `save_image` has written in this process, the last one's path)."""
  return _saved["count"], _saved["last"]


def save_image(path: str | os.PathLike, image: np.ndarray, *, bits: int = 8) -> pathlib.Path:
  """Writes an (H, W, 3) float image in [0, 1] atomically (temp file + rename), so a crash never leaves half a file.

  `bits` 16 writes 16-bit PNG or TIFF. Returns the path."""
  path = check_output_path(path, bits=bits)
  fmt = _WRITERS[path.suffix.lower()][0]
  image = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float32)), 0.0, 1.0)
  from PIL import Image  # pylint: disable=import-outside-toplevel
  if bits == 16:
    pil = _rgb16_image(np.round(image * 65535.0).astype(np.uint16), fmt)
  else:
    pil = Image.fromarray(np.round(image * 255.0).astype(np.uint8), mode="RGB")
  # PNG at zlib level 1: faster to write than Pillow's default 6 for a few percent more bytes (docs/adain.md).
  options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {"compress_level": 1} if fmt == "PNG" else {}
  try:
    with atomic.atomic_write(path) as f:
      if isinstance(pil, bytes):
        f.write(pil)
      else:
        pil.save(f, format=fmt, **options)
  except OSError as e:  # disk full, permissions changed meanwhile, ...: a user problem, not a bug
    raise NSTError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
  _saved.update(count=_saved["count"] + 1, last=path)
  return path


def _rgb16_image(arr: np.ndarray, fmt: str) -> bytes:
  """Pillow cannot write 48-bit RGB, so 16-bit PNG and TIFF are encoded here."""
  return _encode_png16(arr) if fmt == "PNG" else _encode_tiff16(arr)


def _encode_png16(arr: np.ndarray) -> bytes:
  import struct
  import zlib
  h, w, _ = arr.shape
  raw = np.empty((h, 1 + w * 6), dtype=np.uint8)
  raw[:, 0] = 0  # filter type "None" per row
  raw[:, 1:] = arr.astype(">u2").view(np.uint8).reshape(h, w * 6)

  def chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

  header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)  # 16-bit, truecolour
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
          + chunk(b"IEND", b""))


def _encode_tiff16(arr: np.ndarray) -> bytes:
  """Minimal baseline TIFF, 16 bits per RGB sample, uncompressed, one strip, little-endian."""
  import struct
  h, w, _ = arr.shape
  data = arr.astype("<u2").tobytes()
  entries = [  # (tag, type, count, value); type 3 = SHORT, 4 = LONG
      (256, 4, 1, w), (257, 4, 1, h), (258, 3, 3, None), (259, 3, 1, 1), (262, 3, 1, 2),
      (273, 4, 1, None), (277, 3, 1, 3), (278, 4, 1, h), (279, 4, 1, len(data)), (284, 3, 1, 1),
  ]
  ifd_offset = 8
  ifd_size = 2 + 12 * len(entries) + 4
  bits_offset = ifd_offset + ifd_size
  data_offset = bits_offset + 6
  out = bytearray(b"II*\x00" + struct.pack("<I", ifd_offset))
  out += struct.pack("<H", len(entries))
  for tag, typ, count, value in entries:
    if tag == 258:
      value = bits_offset
    elif tag == 273:
      value = data_offset
    if typ == 3 and count == 1:
      out += struct.pack("<HHIHH", tag, typ, count, value, 0)
    else:
      out += struct.pack("<HHII", tag, typ, count, value)
  out += struct.pack("<I", 0)
  out += struct.pack("<HHH", 16, 16, 16)
  out += data
  return bytes(out)
