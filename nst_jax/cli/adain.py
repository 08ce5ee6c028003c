"""`python -m nst_jax adain`: arbitrary style transfer in one forward pass (Huang & Belongie 2017), with alpha, style
blending, masks, colour control and thumbnail-normalised tiles for large images.

  python -m nst_jax adain --content A.jpg --style B.jpg[,C.jpg] --style_blend 0.7,0.3 --alpha 0.8 --output C.png
"""

from __future__ import annotations

import pathlib
import time

import numpy as np
from absl import flags

from nst_jax.cli import shared_flags
from nst_jax.cli.command import Command, Sections
from nst_jax.errors import NSTError
from nst_jax.io import image_io
from nst_jax.losses import color, guidance
from nst_jax.methods import adain
from nst_jax.models import adain_decoder
from nst_jax.weights.store import resolve_weights


def define_flags(fv: flags.FlagValues) -> Sections:
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
  controls = ("controls", ["alpha", "style_blend", "style_masks", "preserve_colors"])
  flags.DEFINE_float("max_megapixels", 2.0, "Larger images go through tiles normalised with the statistics of a "
                     "thumbnail of the whole image (URST); also the tile size.", flag_values=fv)
  flags.DEFINE_integer("tile_size", None, "Force tiles of this many px (multiple of 8).", flag_values=fv)
  tiles = ("large images", ["max_megapixels", "tile_size"])
  return [images, controls, tiles]


def run(fv: flags.FlagValues, positional: list[str]) -> pathlib.Path:
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
    tiling = adain.Tiling(tile=fv.tile_size, overlap=max(8, fv.tile_size // 8 // 8 * 8), thumbnail=fv.tile_size)
  content = shared_flags.load_content(fv.content)
  if fv["size"].present:
    content = image_io.resize_long_side(content, fv.size)
  styles = shared_flags.load_styles(fv.style)
  blend = shared_flags.floats(fv.style_blend, "--style_blend") or None
  masks = None
  if fv.style_masks:
    if len(fv.style_masks) != len(styles):
      raise NSTError(f"--style_masks needs one mask per style ({len(styles)}), got {len(fv.style_masks)}")
    masks = np.stack([guidance.load_mask(p, height=content.shape[0], width=content.shape[1])
                      for p in fv.style_masks])
  model = adain.make_model(resolve_weights(fv.weights), adain_decoder.resolve_decoder(fv.decoder))
  start = time.perf_counter()
  result = adain.stylize(content, styles, model=model, alpha=fv.alpha, style_weights=blend, masks=masks,
                         preserve_colors=fv.preserve_colors, max_pixels=int(fv.max_megapixels * 2**20),
                         tiling=tiling)
  image_io.save_image(output, result)
  print(f"wrote {output} ({result.shape[1]}x{result.shape[0]}, alpha {fv.alpha}, "
        f"{time.perf_counter() - start:.1f} s)")
  return output


COMMAND = Command(
    name="adain", prog="python -m nst_jax adain", usage="--content PHOTO --style PAINTING[,...] [flags]",
    description="One encoder-AdaIN-decoder pass with the shipped decoder. Time: about 3 s at 512x512 on a 2-core CPU "
                "(plus compilation on the first call), 2.7 minutes at 4K in tiles.",
    define_flags=define_flags, run=run)
