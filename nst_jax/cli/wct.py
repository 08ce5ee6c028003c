"""`python -m nst_jax wct`: universal style transfer (Li et al. 2017), the coarse-to-fine whitening and colouring
cascade over relu5_1 ... relu1_1 with the shipped reconstruction decoders, with alpha (per level), style blending,
region masks and colour control.

  python -m nst_jax wct --content A.jpg --style B.jpg[,C.jpg] --style_blend 0.7,0.3 --alpha 0.8 --output C.png
"""

from __future__ import annotations

import os
import pathlib
import time

import numpy as np
from absl import flags

from nst_jax.cli import shared_flags
from nst_jax.cli.command import Command, Sections
from nst_jax.errors import NSTError
from nst_jax.io import image_io
from nst_jax.losses import color, guidance
from nst_jax.methods.wct import stylize as wct
from nst_jax.models import wct_decoder
from nst_jax.weights.store import resolve_weights, weights_dir

DEFAULT_DECODERS = "wct-decoders-hed-vgg16"
_REPO_WEIGHTS = pathlib.Path(__file__).resolve().parents[2] / "weights"


def resolve_decoders(name_or_path: str) -> wct_decoder.DecoderSet:
  """A decoder .npz path, or NAME looked up as NAME.npz in `weights_dir()`, then in the checkout's weights/."""
  path = pathlib.Path(name_or_path).expanduser()
  if path.is_file():
    return wct_decoder.load_decoders(path)
  if "/" not in name_or_path and os.sep not in name_or_path and not path.suffix:
    for folder in (weights_dir(), _REPO_WEIGHTS):
      if (folder / f"{name_or_path}.npz").is_file():
        return wct_decoder.load_decoders(folder / f"{name_or_path}.npz")
  raise NSTError(f"--decoders {name_or_path!r}: no such WCT decoder file or name (train and export one with "
                 "`python -m nst_jax train-wct`)")


def define_flags(fv: flags.FlagValues) -> Sections:
  images = shared_flags.define_images(
      fv, content="Content image (default: matplotlib's grace_hopper.jpg).",
      style="Style image(s), comma-separated (default: a generated swirl painting).", output="stylized.png",
      size=None, size_help="Long side of the output in pixels (default: the content's own size).")
  flags.DEFINE_string("decoders", DEFAULT_DECODERS, "WCT decoder .npz, or a name in the weights folder.",
                      flag_values=fv)
  images[1].append("decoders")
  flags.DEFINE_list("alpha", ["1.0"], "Content-style blend of the features in [0, 1]: one value, or one per level "
                    "of --levels (coarse to fine).", flag_values=fv)
  flags.DEFINE_list("levels", list(wct_decoder.LEVELS), "Levels of the cascade, run coarse to fine (default: every "
                    "level the decoder file has).", flag_values=fv)
  flags.DEFINE_list("style_blend", [], "Blend weights of the style images (normalised).", flag_values=fv)
  flags.DEFINE_list("style_masks", [], "One mask per style in content space (white = that style).", flag_values=fv)
  flags.DEFINE_float("style_scale", 1.0, "Resize the style images by this factor (larger: larger strokes).",
                     flag_values=fv)
  flags.DEFINE_enum("preserve_colors", "none", list(color.COLOR_MODES), "Keep the content's colours: luminance-only "
                    "transfer (YIQ) or style colour histogram matching.", flag_values=fv)
  controls = ("controls", ["alpha", "levels", "style_blend", "style_masks", "style_scale", "preserve_colors"])
  return [images, controls]


def run(fv: flags.FlagValues, positional: list[str]) -> pathlib.Path:
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
  else:
    levels = [layer for layer in wct_decoder.LEVELS if layer in decoders.levels]
  if len(alphas) not in (1, len(levels)):
    raise NSTError(f"--alpha needs one value or one per level ({len(levels)}: {', '.join(levels)}), got "
                   f"{len(alphas)}")
  alpha = dict(zip(levels, alphas if len(alphas) > 1 else alphas * len(levels)))
  content = shared_flags.load_content(fv.content)
  if fv["size"].present:
    content = image_io.resize_long_side(content, fv.size)
  styles = shared_flags.load_styles(fv.style)
  if fv.style_scale != 1.0:
    scale = fv.style_scale
    styles = [image_io.resize(s, max(1, round(s.shape[0] * scale)), max(1, round(s.shape[1] * scale))) for s in styles]
  blend = shared_flags.floats(fv.style_blend, "--style_blend") or None
  masks = None
  if fv.style_masks:
    if len(fv.style_masks) != len(styles):
      raise NSTError(f"--style_masks needs one mask per style ({len(styles)}), got {len(fv.style_masks)}")
    masks = np.stack([guidance.load_mask(p, height=content.shape[0], width=content.shape[1])
                      for p in fv.style_masks])
  model = wct.make_model(resolve_weights(fv.weights), decoders)
  start = time.perf_counter()
  result = wct.stylize(content, styles, model=model, alpha=alpha, style_weights=blend, masks=masks,
                       preserve_colors=fv.preserve_colors, levels=levels)
  image_io.save_image(output, result)
  print(f"wrote {output} ({result.shape[1]}x{result.shape[0]}, {len(levels)} levels, "
        f"{time.perf_counter() - start:.1f} s)")
  return output


COMMAND = Command(
    name="wct", prog="python -m nst_jax wct", usage="--content PHOTO --style PAINTING[,...] [flags]",
    description="Universal style transfer: whitening and colouring of the encoder's features at every level, "
                "coarse to fine, each decoded by its reconstruction decoder. Any style, no optimisation.",
    define_flags=define_flags, run=run)
