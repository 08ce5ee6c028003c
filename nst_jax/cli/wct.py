"""`python -m nst_jax wct`: universal style transfer (Li et al. 2017) with the shipped reconstruction decoders.

  python -m nst_jax wct --content A.jpg --style B.jpg[,C.jpg] --style_blend 0.7,0.3 --alpha 0.8 --output C.png

The coarse-to-fine whitening and colouring cascade over relu5_1 ... relu1_1 (by default the levels the decoder file
recommends), with alpha (per level), style blending, region masks and colour control.
"""

from __future__ import annotations

import pathlib
import time

import numpy as np
from absl import flags

from nst_jax.cli import shared_flags, validation
from nst_jax.cli.command import Command, Sections
from nst_jax.errors import NSTError
from nst_jax.io import image_io
from nst_jax.losses import color
from nst_jax.methods.adain import cache as adain_cache
from nst_jax.methods import blend_tiles
from nst_jax.methods.wct import cache as wct_cache, stylize as wct
from nst_jax.models import wct_decoder
from nst_jax.weights.store import find_trained_file, resolve_weights

DEFAULT_DECODERS = "wct-decoders-hed-vgg16"
DEEP_LEVELS = ("relu5_1", "relu4_1")


def resolve_decoders(name_or_path: str, *, kind: str = "WCT",
                     train_command: str = "python -m nst_jax train wct") -> wct_decoder.DecoderSet:
  """A decoder .npz path, or NAME looked up as NAME.npz in `weights_dir()`, then in the checkout's weights/; the
  one-line error names the `kind` of file and the `train_command` that makes one."""
  path = find_trained_file(name_or_path)
  if path is None:
    raise NSTError(f"--decoders {name_or_path!r}: no such {kind} decoder file or name (train and export one with "
                   f"`{train_command}`)")
  return wct_decoder.load_decoders(path)


def define_flags(fv: flags.FlagValues) -> Sections:
  """Defines the command's flags on `fv`; returns the help sections."""
  images = shared_flags.define_images(
      fv, content="Content image (default: matplotlib's grace_hopper.jpg).",
      style="Style image(s), comma-separated (default: a generated swirl painting).", output="stylized.png",
      size=None, size_help="Long side of the output in pixels (default: the content's own size).")
  flags.DEFINE_string("decoders", DEFAULT_DECODERS, "WCT decoder .npz, or a name in the weights folder.",
                      flag_values=fv)
  images[1].append("decoders")
  flags.DEFINE_list("alpha", ["1.0"], "Content-style blend of the features in [0, 1]: one value, or one per level "
                    "of --levels (coarse to fine).", flag_values=fv)
  flags.DEFINE_list("levels", list(wct_decoder.LEVELS), "Levels of the cascade, run coarse to fine (default: the "
                    "levels the decoder file recommends, else all it has).", flag_values=fv)
  flags.DEFINE_list("style_blend", [], "Blend weights of the style images (normalised).", flag_values=fv)
  flags.DEFINE_list("style_masks", [], "One mask per style in content space (white = that style).", flag_values=fv)
  flags.DEFINE_float("style_scale", 1.0, "Style images are resized to this times the output's long side (larger: "
                     "larger strokes), as in `stylize`.", flag_values=fv)
  flags.DEFINE_enum("preserve_colors", "none", list(color.COLOR_MODES), "Keep the content's colours: luminance-only "
                    "transfer (YIQ) or style colour histogram matching.", flag_values=fv)
  flags.DEFINE_float("deep_scale", 1.0, "Run relu5_1 and relu4_1 on the image resized by this factor in (0, 1] "
                     "(0.5: their cost / 4; the coarse levels lay down large shapes).", flag_values=fv)
  flags.DEFINE_list("passes", ["1"], "Times each level runs in a row (one value, or one per level): each further pass "
                    "brings the level's statistics closer to the style's.", flag_values=fv)
  controls = ("controls", ["alpha", "levels", "passes", "style_blend", "style_masks", "style_scale",
                           "preserve_colors", "deep_scale"])
  flags.DEFINE_float("max_megapixels", 1.0, "Larger images go through overlapping tiles whitened with the whole "
                     "image's statistics; also the tile size.", flag_values=fv)
  flags.DEFINE_integer("tile_size", None, "Force tiles of this many px (multiple of 16).", flag_values=fv)
  flags.DEFINE_string("style_cache", None, "Folder for each style file's transforms ('off' to disable; default "
                      f"${adain_cache.ENV}, else ~/.cache/nst_jax/adain_styles).", flag_values=fv)
  return [images, controls, ("large images", ["max_megapixels", "tile_size"]), ("caches", ["style_cache"])]


def run(fv: flags.FlagValues, positional: list[str]) -> pathlib.Path:
  """Stylises the content with the parsed flags and writes --output; returns its path."""
  del positional
  output = image_io.check_output_path(fv.output)
  if fv["size"].present and fv.size < 16:
    raise NSTError(f"--size must be at least 16 pixels, got {fv.size}")
  if not 0.05 <= fv.style_scale <= 20:
    raise NSTError(f"--style_scale must be in [0.05, 20], got {fv.style_scale}")
  unknown = sorted(set(fv.levels) - set(wct_decoder.LEVELS))
  if unknown or not fv.levels:
    raise NSTError(f"--levels: expected some of {', '.join(wct_decoder.LEVELS)}, got {','.join(fv.levels)!r}")
  alphas = shared_flags.floats(fv.alpha, "--alpha")
  if not all(0.0 <= a <= 1.0 for a in alphas):
    raise NSTError(f"--alpha values must be in [0, 1], got {','.join(fv.alpha)}")
  decoders = resolve_decoders(fv.decoders)
  if fv["levels"].present:
    missing = [layer for layer in fv.levels if layer not in decoders.levels]
    if missing:
      raise NSTError(f"--levels: the decoder file has no decoder for {missing[0]} (it has "
                     f"{', '.join(decoders.levels)})")
    levels = [layer for layer in wct_decoder.LEVELS if layer in fv.levels]
  else:  # the file's recommended levels (export --default_levels), else all it has
    default = decoders.info.get("default_levels") or list(decoders.levels)
    levels = [layer for layer in wct_decoder.LEVELS if layer in default and layer in decoders.levels]
  if len(alphas) not in (1, len(levels)):
    raise NSTError(f"--alpha needs one value or one per level ({len(levels)}: {', '.join(levels)}), got "
                   f"{len(alphas)}")
  alpha = dict(zip(levels, alphas if len(alphas) > 1 else alphas * len(levels)))
  passes = shared_flags.integers(fv.passes, "--passes")
  if len(passes) not in (1, len(levels)) or not all(1 <= n <= 10 for n in passes):
    raise NSTError(f"--passes needs one value or one per level ({len(levels)}), each from 1 to 10, got "
                   f"{','.join(fv.passes)}")
  passes = dict(zip(levels, passes if len(passes) > 1 else passes * len(levels)))
  content = shared_flags.load_content(fv.content)
  if fv["size"].present:
    validation.check_working_size(content.shape, fv.size, what=f"content image {fv.content or '(demo)'!r}",
                                  minimum=validation.min_side(decoders.arch, levels))
    content = image_io.resize_long_side(content, fv.size)
  if fv.style:
    shared_flags.load_styles(fv.style)  # bad style files are refused before any compilation
  cache = adain_cache.resolve(fv.style_cache)
  if cache is not None and fv.style_cache is not None:
    validation.check_writable_folder(cache, "--style_cache")
  if not 0.1 <= fv.deep_scale <= 1.0:
    raise NSTError(f"--deep_scale must be in [0.1, 1], got {fv.deep_scale}")
  scales = {layer: fv.deep_scale for layer in DEEP_LEVELS} if fv.deep_scale != 1.0 else {}
  if not fv.max_megapixels > 0 or fv.max_megapixels == float("inf"):
    raise NSTError(f"--max_megapixels must be a positive number, got {fv.max_megapixels}")
  tiling = None
  if fv.tile_size is not None:
    if fv.tile_size < 32 or fv.tile_size % 16:
      raise NSTError(f"--tile_size must be a multiple of 16 and at least 32, got {fv.tile_size}")
    tiling = blend_tiles.Tiling(tile=fv.tile_size, overlap=max(8, fv.tile_size // 8 // 8 * 8), thumbnail=fv.tile_size)
  num_styles = len(fv.style) if fv.style else 1
  blend = shared_flags.floats(fv.style_blend, "--style_blend") or None
  masks = None
  if fv.style_masks:
    if len(fv.style_masks) != num_styles:
      raise NSTError(f"--style_masks needs one mask per style ({num_styles}), got {len(fv.style_masks)}")
    masks = np.stack(shared_flags.load_masks(fv.style_masks, height=content.shape[0], width=content.shape[1]))
  model = wct.make_model(resolve_weights(fv.weights), decoders)
  start = time.perf_counter()
  kw = dict(model=model, alpha=alpha, style_weights=blend, masks=masks, preserve_colors=fv.preserve_colors,
            levels=levels, max_pixels=int(fv.max_megapixels * 2**20), tiling=tiling, scales=scales,
            passes=passes)
  long_side = max(16, round(max(content.shape[:2]) * fv.style_scale))
  if fv.style and fv.preserve_colors == "none":  # style transforms from the per-file cache
    transforms = [wct_cache.style_transforms(p, model=model, folder=cache, long_side=long_side, scales=scales)
                  for p in fv.style]
    result = wct.stylize(content, [], transforms=transforms, **kw)
  else:
    styles = ([wct_cache.load_style(p, long_side) for p in fv.style] if fv.style else
              [image_io.resize_long_side(s, long_side) for s in shared_flags.load_styles(None)])
    result = wct.stylize(content, styles, **kw)
  image_io.save_image(output, result)
  print(f"wrote {output} ({result.shape[1]}x{result.shape[0]}, {len(levels)} levels, "
        f"{time.perf_counter() - start:.1f} s)")
  return output


COMMAND = Command(
    name="wct", prog="python -m nst_jax wct", usage="--content PHOTO --style PAINTING[,...] [flags]",
    description="Universal style transfer: whitening and colouring of the encoder's features at every level, "
                "coarse to fine, each decoded by its reconstruction decoder. Any style, no optimisation.",
    define_flags=define_flags, run=run,
    input_flags=("content", "style", "style_masks", "weights", "decoders"))
