"""Octave style layers: a style layer taken on the image downsampled by an integer factor, named 'relu2_1@4'.

A Gram matrix of a shallow layer taken on a downsampled image describes marks that many times larger, with the
shallow layer's cheap, grid-free gradients (Snelgrove 2017, "High-resolution multi-scale neural texture
synthesis"). On hed-vgg16 this is what makes strokes larger: its deep layers carry little of the style loss, and
raising their weights prints their pooling grid before the strokes grow (docs/gatys.md). An octave layer's target
is the same layer's Gram matrix of the style image, downsampled by the same factor from the size it is matched at.

Images and guides are downsampled by `downsample` (linear interpolation with antialiasing, `jax.image.resize`),
whose gradient spreads every output pixel smoothly over its footprint, so no block grid is printed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax

from nst_jax.models import vgg

SEPARATOR = "@"
MAX_FACTOR = 16


def split(name: str) -> tuple[str, int]:
  """The (layer, factor) of an entry: 'relu2_1@4' gives ('relu2_1', 4), a plain layer name (name, 1).

  Raises ValueError for a factor that is not an integer in [2, MAX_FACTOR]."""
  base, sep, factor = name.partition(SEPARATOR)
  if not sep:
    return name, 1
  if not factor.isdigit() or not 2 <= int(factor) <= MAX_FACTOR:
    raise ValueError(f"layer {name!r}: the downsampling factor after {SEPARATOR!r} must be an integer from 2 to "
                     f"{MAX_FACTOR}, e.g. relu2_1{SEPARATOR}4")
  return base, int(factor)


def name(base: str, factor: int) -> str:
  """The entry naming `base` taken at `factor`: 'relu2_1@4', or `base` itself for factor 1."""
  return base if factor == 1 else f"{base}{SEPARATOR}{factor}"


def factors(names: Sequence[str]) -> tuple[int, ...]:
  """The downsampling factors above 1 among `names`, ascending."""
  return tuple(sorted({split(n)[1] for n in names} - {1}))


def octave_layers(names: Sequence[str]) -> tuple[str, ...]:
  """The entries of `names` taken on a downsampled image (factor above 1), in order."""
  return tuple(n for n in names if split(n)[1] > 1)


def at_factor(names: Sequence[str], factor: int) -> tuple[str, ...]:
  """The network layers that `names` use at `factor` (1: the image itself), in order, without repeats."""
  return tuple(dict.fromkeys(base for base, f in map(split, names) if f == factor))


def check_layers(arch: str, names: Sequence[str]) -> None:
  """Raises ValueError naming the first entry of `names` that is not a layer of `arch`, plain or with a factor."""
  for entry in names:
    vgg.check_layers(arch, [split(entry)[0]])


def downsample(image: jax.Array, factor: int) -> jax.Array:
  """(..., H, W, C) to (..., round(H / factor), round(W / factor), C) by antialiased linear resampling."""
  if factor == 1:
    return image
  *lead, h, w, c = image.shape
  shape = (*lead, max(1, round(h / factor)), max(1, round(w / factor)), c)
  return jax.image.resize(image, shape, method="linear", antialias=True)


def features(apply: Callable[[jax.Array, tuple[str, ...]], Mapping[str, jax.Array]], image: jax.Array,
             names: Sequence[str]) -> dict[str, jax.Array]:
  """{entry: features} for every entry of `names` (octave entries on the downsampled image).

  `apply(image, layers)` gives the network's `layers` of an (H, W, 3) image; it is called once on the image and once
  per factor on `downsample(image, factor)`."""
  out: dict[str, jax.Array] = {}
  for factor in (1, *factors(names)):
    layers = at_factor(names, factor)
    if layers:
      feats = apply(downsample(image, factor), layers)
      out.update({name(base, factor): feats[base] for base in layers})
  return out


def guides_at_layers(carry: Callable[[jax.Array, tuple[str, ...]], Mapping[str, jax.Array]], masks: jax.Array,
                     names: Sequence[str]) -> dict[str, jax.Array]:
  """`features` for guides: {entry: (R, h, w) guides} for every entry of `names`.

  `carry(masks, layers)` takes (R, H, W) image-space guides to `layers` (`guidance.masks_at_layers`); octave entries
  get the guides downsampled like the image."""
  return features(lambda m, layers: carry(m[..., 0], layers), masks[..., None], names)
