"""`python -m nst_jax adain`: arbitrary style transfer in one forward pass (Huang & Belongie 2017).

  python -m nst_jax adain --content A.jpg --style B.jpg[,C.jpg] --style_blend 0.7,0.3 --alpha 0.8 --output C.png

With alpha, style blending, masks, colour control and thumbnail-normalised tiles for large images. A decoder file
with its own (student) encoder needs no VGG weights; style statistics are cached per style file
(`nst_jax.methods.adain.cache`).
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
from nst_jax.methods import blend_tiles
from nst_jax.methods.adain import cache as adain_cache, stylize as adain
from nst_jax.models import adain_decoder
from nst_jax.weights import adain_decoders
from nst_jax.weights.store import resolve_weights


def define_flags(fv: flags.FlagValues) -> Sections:
  """Defines the command's flags on `fv`; returns the help sections."""
  images = shared_flags.define_images(
      fv, content="Content image (default: matplotlib's grace_hopper.jpg).",
      style="Style image(s), comma-separated (default: a generated swirl painting).", output="stylized.png",
      size=None, size_help="Long side of the output in pixels (default: the content's own size).")
  flags.DEFINE_string("decoder", adain_decoder.DEFAULT_DECODER, "Decoder .npz, or a name in the weights folder.",
                      flag_values=fv)
  images[1].append("decoder")
  flags.DEFINE_float("alpha", 1.0, "Content-style trade-off in [0, 1] (0 = the decoder's reconstruction of the "
                     "content).", flag_values=fv)
  flags.DEFINE_list("style_blend", [], "Blend weights of the style images (normalised).", flag_values=fv)
  flags.DEFINE_list("style_masks", [], "One mask per style in content space (white = that style).", flag_values=fv)
  flags.DEFINE_enum("preserve_colors", "none", list(color.COLOR_MODES), "Keep the content's colours: luminance-only "
                    "transfer (YIQ) or style colour histogram matching.", flag_values=fv)
  flags.DEFINE_bool("style_colors", True, "Give the output the styles' chroma statistics (luma untouched; a "
                    "grayscale style gives a gray image); only without --preserve_colors and --style_masks.",
                    flag_values=fv)
  controls = ("controls", ["alpha", "style_blend", "style_masks", "preserve_colors", "style_colors"])
  flags.DEFINE_float("max_megapixels", 2.0, "Larger images go through tiles normalised with the statistics of a "
                     "thumbnail of the whole image (URST); also the tile size.", flag_values=fv)
  flags.DEFINE_integer("tile_size", None, "Force tiles of this many px (multiple of 8).", flag_values=fv)
  tiles = ("large images", ["max_megapixels", "tile_size"])
  flags.DEFINE_string("style_cache", None, "Folder for the statistics of each style file ('off' to disable; default "
                      f"${adain_cache.ENV}, else ~/.cache/nst_jax/adain_styles).", flag_values=fv)
  return [images, controls, tiles, ("caches", ["style_cache"])]


def run(fv: flags.FlagValues, positional: list[str]) -> pathlib.Path:
  """Stylises the content with the parsed flags and writes --output; returns its path."""
  del positional
  output = image_io.check_output_path(fv.output)
  if fv["size"].present and fv.size < 16:
    raise NSTError(f"--size must be at least 16 pixels, got {fv.size}")
  if not 0.0 <= fv.alpha <= 1.0:
    raise NSTError(f"--alpha must be in [0, 1], got {fv.alpha}")
  if not fv.max_megapixels > 0:
    raise NSTError(f"--max_megapixels must be positive, got {fv.max_megapixels}")
  tiling = None
  if fv.tile_size:
    tiling = blend_tiles.Tiling(tile=fv.tile_size, overlap=max(8, fv.tile_size // 8 // 8 * 8), thumbnail=fv.tile_size)
  content = shared_flags.load_content(fv.content)
  if fv["size"].present:
    validation.check_working_size(content.shape, fv.size, what=f"content image {fv.content or '(demo)'!r}",
                                  minimum=validation.min_side("vgg16", ("relu4_1",)))  # the encoder's depth
    content = image_io.resize_long_side(content, fv.size)
  styles = shared_flags.load_styles(fv.style)  # decoded here to refuse bad files before any compilation
  cache = adain_cache.resolve(fv.style_cache)
  if cache is not None and fv.style_cache is not None:
    validation.check_writable_folder(cache, "--style_cache")
  num_styles = len(styles)
  blend = shared_flags.floats(fv.style_blend, "--style_blend") or None
  masks = None
  if fv.style_masks:
    if len(fv.style_masks) != num_styles:
      raise NSTError(f"--style_masks needs one mask per style ({num_styles}), got {len(fv.style_masks)}")
    masks = np.stack(shared_flags.load_masks(fv.style_masks, height=content.shape[0], width=content.shape[1]))
  ckpt = adain_decoders.resolve_decoder(fv.decoder)
  # A decoder file with its own (student) encoder needs no VGG weights, unless --weights names one to check.
  weights = resolve_weights(fv.weights) if ckpt.student is None or fv["weights"].present else None
  model = adain.make_model(weights, ckpt)
  start = time.perf_counter()
  kw = dict(model=model, alpha=fv.alpha, style_weights=blend, masks=masks, preserve_colors=fv.preserve_colors,
            max_pixels=int(fv.max_megapixels * 2**20), tiling=tiling, style_colors=fv.style_colors)
  if fv.style and fv.preserve_colors == "none":  # style statistics from the per-file cache
    stats = [adain_cache.style_stats(p, model=model, folder=cache) for p in fv.style]
    result = adain.stylize(content, [], style_stats=stats, **kw)
  else:
    result = adain.stylize(content, styles, **kw)
  image_io.save_image(output, result)
  print(f"wrote {output} ({result.shape[1]}x{result.shape[0]}, alpha {fv.alpha}, "
        f"{time.perf_counter() - start:.1f} s)")
  return output


COMMAND = Command(
    name="adain", prog="python -m nst_jax adain", usage="--content PHOTO --style PAINTING[,...] [flags]",
    description="One encoder-AdaIN-decoder pass with the shipped decoder. Run times measured on a 2-core CPU "
                "are in docs/performance/benchmark_adain_cli.md (3 s a call at 1024x768, 4 s with compilation).",
    define_flags=define_flags, run=run,
    input_flags=("content", "style", "style_masks", "weights", "decoder"))
