"""WCT style transforms cached per style file, so that a repeated `wct` call does not encode its style again.

A style is needed only as its per-level mean and colouring matrix (`stylize.style_transforms`); they are kept as
one state file of `nst_jax.io.checkpoint` (format "nst_jax-wct-style") per (file bytes, size, encoder, levels and
their scales, eps), in the folder of the AdaIN style statistics (`nst_jax.methods.adain.cache.resolve`:
--style_cache, $NST_JAX_STYLE_CACHE, or ~/.cache/nst_jax/adain_styles; 'off' disables it). A damaged entry is
recomputed; a read-only folder only costs time.
"""

from __future__ import annotations

import hashlib
import os
import pathlib

import numpy as np

from nst_jax.errors import NSTError
from nst_jax.io import checkpoint, image_io
from nst_jax.methods.wct import ops, stylize

_VERSION = b"wct-style-v1"  # bump when style_transforms changes what it computes
FORMAT = "nst_jax-wct-style"
FORMAT_VERSION = 1


def style_key(data: bytes, model: stylize.Model, *, long_side: int | None, eps: float,
              scales: dict | None = None) -> str:
  """The cache key of a style file's transforms: sha256 of its bytes and of everything the transforms depend on."""
  levels = ",".join(f"{layer}@{(scales or {}).get(layer, 1.0)!r}" for layer in model.levels)
  identity = f"{model.encoder_id}|{levels}|{long_side!r}|{eps!r}".encode()
  return hashlib.sha256(_VERSION + identity + b"\0" + data).hexdigest()


def load_style(path: str | os.PathLike, long_side: int | None) -> np.ndarray:
  """The style image at `path`, resized to `long_side` px (None: as it is)."""
  image = image_io.load_image(path, what="style image")
  return image if long_side is None else image_io.resize_long_side(image, long_side)


def style_transforms(path: str | os.PathLike, *, model: stylize.Model, folder: pathlib.Path | None,
                     long_side: int | None = None, scales: dict | None = None,
                     eps: float = ops.EPS) -> dict[str, ops.StyleTransform]:
  """`stylize.style_transforms` of the style file at `path` resized to `long_side`, cached.

  From the cache when present (and stored there when not); the image is decoded only on a miss. Without a folder
  they are computed every time."""
  path = pathlib.Path(path)
  try:
    data = path.read_bytes() if path.is_file() else None
  except OSError as e:
    raise NSTError(f"style image {str(path)!r} cannot be read ({e.strerror or e})") from None
  if data is None:
    image_io.load_image(path, what="style image")  # raises the usual one-line error
  entry = None if folder is None else folder / f"{style_key(data, model, long_side=long_side, eps=eps, scales=scales)}.npz"
  if entry is not None and entry.is_file():
    try:
      meta, arrays = checkpoint.read(entry, what="WCT style transform")
      checkpoint.check_format(meta, path=entry, kind=FORMAT, versions=(FORMAT_VERSION,), what="WCT style transform")
      return {layer: ops.StyleTransform(arrays[f"{layer}/mean"], arrays[f"{layer}/coloring"])
              for layer in model.levels}
    except (NSTError, KeyError):
      pass  # a damaged entry is recomputed and replaced
  transforms = stylize.style_transforms(model, load_style(path, long_side), scales=scales, eps=eps)
  transforms = {k: ops.StyleTransform(np.asarray(t.mean), np.asarray(t.coloring)) for k, t in transforms.items()}
  if entry is not None:
    try:
      entry.parent.mkdir(parents=True, exist_ok=True)
      arrays = {f"{layer}/{k}": getattr(t, k) for layer, t in transforms.items() for k in ("mean", "coloring")}
      checkpoint.write(entry, kind=FORMAT, version=FORMAT_VERSION, meta={"encoder": model.encoder_id},
                       arrays=arrays)
    except OSError:
      pass
  return transforms
