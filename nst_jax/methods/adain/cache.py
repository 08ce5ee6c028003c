"""Style statistics cached per style file, so that a repeated `adain` call does not encode its style again.

AdaIN needs of a style image only the channel means and stds of its encoder features (`stylize.style_statistics`:
2 x 512 numbers at relu4_1, those of relu1_1..relu3_1 for a decoder with skips, and the pixels' YIQ statistics).
They are kept in a per-user folder, one small state file of `nst_jax.io.checkpoint` (format
"nst_jax-adain-style-stats") per (file content, encoder) pair: the key is the sha256 of the file's bytes and of the
encoder's identity (`Model.encoder_id`), so an edited file or another encoder is a new entry. The folder is, in
order: the `--style_cache` flag, NST_JAX_STYLE_CACHE, $XDG_CACHE_HOME/nst_jax/adain_styles or
~/.cache/nst_jax/adain_styles; 'off' (or '0', 'none', '') disables it.
"""

from __future__ import annotations

import hashlib
import os
import pathlib

import numpy as np

from nst_jax.errors import NSTError
from nst_jax.io import checkpoint, compile_cache, image_io
from nst_jax.methods.adain import stylize as adain

ENV = "NST_JAX_STYLE_CACHE"
_VERSION = b"adain-style-stats-v1"  # bump when style_statistics changes what it computes
STATS_FORMAT = "nst_jax-adain-style-stats"
STATS_FORMAT_VERSION = 1


def resolve(flag: str | None) -> pathlib.Path | None:
  """The folder for style statistics (None: off), from the flag value, else the environment, else the default."""
  value = flag if flag is not None else os.environ.get(ENV)
  if value is None:
    return compile_cache.default_dir().parent / "adain_styles"
  if value.strip().lower() in ("", "0", "off", "none", "false", "no"):
    return None
  return pathlib.Path(value).expanduser()


def style_key(data: bytes, model: adain.Model) -> str:
  """The cache key of a style file's bytes for `model`'s encoder."""
  identity = f"{model.encoder_id}|{','.join(model.layers)},{adain.COLORS}".encode()
  return hashlib.sha256(_VERSION + identity + b"\0" + data).hexdigest()


def style_stats(path: str | os.PathLike, *, model: adain.Model, folder: pathlib.Path | None) -> adain.LayerStats:
  """`adain.style_statistics` of the style image at `path`, from the cache when present (and stored there when not).

  Without a folder it is computed every time. The image is decoded only on a miss."""
  path = pathlib.Path(path)
  if not path.is_file() or path.stat().st_size == 0:
    image_io.load_image(path, what="style image")  # raises the usual one-line error
  try:
    data = path.read_bytes()
  except OSError as e:
    raise NSTError(f"style image {str(path)!r} cannot be read ({e.strerror or e})") from None
  entry = None if folder is None else folder / f"{style_key(data, model)}.npz"
  keys = (*model.layers, adain.COLORS)
  if entry is not None and entry.is_file():
    try:
      meta, arrays = checkpoint.read(entry, what="AdaIN style statistics")
      checkpoint.check_format(meta, path=entry, kind=STATS_FORMAT, versions=(STATS_FORMAT_VERSION,),
                              what="AdaIN style statistics")
      return {key: (arrays[f"{key}/mean"], arrays[f"{key}/std"]) for key in keys}
    except (NSTError, KeyError):
      pass  # a damaged entry is recomputed and replaced
  stats = adain.style_statistics(model, image_io.load_image(path, what="style image"))
  stats = {layer: (np.asarray(mean), np.asarray(std)) for layer, (mean, std) in stats.items()}
  if entry is not None:
    try:
      entry.parent.mkdir(parents=True, exist_ok=True)
      arrays = {f"{layer}/{k}": v for layer, pair in stats.items() for k, v in zip(("mean", "std"), pair)}
      checkpoint.write(entry, kind=STATS_FORMAT, version=STATS_FORMAT_VERSION, meta={"encoder": model.encoder_id},
                       arrays=arrays)
    except OSError:
      pass  # a read-only cache only costs time
  return stats
