"""Held-out evaluation of an AdaIN model: the fixed held-out split of the shared training set and the measurements.

Measurements, all at a given long side (512 px for the acceptance table):
  - reduction: the teacher's style-statistics distance (relu1_1..relu4_1 channel means and stds, squared
    differences; `ops.style_stats_loss`) of the content to the style, divided by that of the stylised output;
    always measured with the teacher VGG (hed-vgg16), whatever encoder the model itself runs;
  - SSIM of the output's luma to the content's (`metrics.ssim`);
  - reconstruction PSNR: the output at alpha = 0 (the decoder's inversion of the content's features) against the
    content;
  - chroma: mean over pixels of max(R, G, B) - min(R, G, B), for outputs with a grayscale style.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import metrics
from nst_jax.io import image_io
from nst_jax.methods.adain import ops as adain_ops
from nst_jax.models import vgg
from nst_jax.weights.format import VGGWeights

# Held out of ../shared/data/train: never trained on (`train adain` excludes them). Ten photographs
# (landscape, city, animals, a building, a grayscale portrait of a lion) and eight paintings (Van Gogh, Kandinsky,
# Dali, a pencil sketch -- the grayscale style --, Cezanne-like still life, Feininger-like cubism, fluid marbling,
# pointillism).
HOLDOUT_PHOTOS = (
    "jbhuang0604__selfexsr__bsd100_img_010_srf_2_hr", "jbhuang0604__selfexsr__urban100_img_050_srf_2_hr",
    "huage001__adaattn__roundbales", "magenta__magenta__eiffel_tower", "endywon__aesust__content_12",
    "cysmith__neural-style-tf__lion", "diyiiyiii__arbitrary-style-transfer-via-multi-adaptation-network__valley",
    "fzliu__style-transfer__nanjing", "msracver__deep-image-analogy__1photo2style_a_a10",
    "endywon__aesust__content_21")
HOLDOUT_PAINTINGS = (
    "gordicaleksa__pytorch-neural-style-transfer__vg_wheat_field", "czczup__urst__21styles_composition_vii",
    "hi-space__image-style-transfer__dali-the_persistence_of_memory", "xunhuang1995__adain-style__sketch",
    "endywon__aesust__style_13", "magenta__magenta__towers_1916_sq", "cysmith__neural-style-tf__oil_crop",
    "endywon__aesust__style_4")
GRAY_STYLES = ("xunhuang1995__adain-style__sketch",)
# Also evaluated: a content photo that the shared data's curators kept out of the training set.
EXTRA_CONTENTS = ("artistic/content/golden_gate.jpg",)
# The learning-curve subset (cheap enough to run every few hundred steps).
CURVE_PHOTOS = HOLDOUT_PHOTOS[2:6]
CURVE_PAINTINGS = HOLDOUT_PAINTINGS[:4]


def holdout_names() -> tuple[str, ...]:
  """The file stems that training never reads: the held-out photos and paintings."""
  return HOLDOUT_PHOTOS + HOLDOUT_PAINTINGS


def load_holdout(data: pathlib.Path, *, photos: Sequence[str] = HOLDOUT_PHOTOS,
                 paintings: Sequence[str] = HOLDOUT_PAINTINGS,
                 extra: Sequence[str] = EXTRA_CONTENTS) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
  """({content name: image}, {style name: image}) from the shared data folder (`data` = ../shared/data)."""
  contents = {name: image_io.load_image(data / "train" / "photos" / f"{name}.jpg") for name in photos}
  contents.update({pathlib.Path(p).stem: image_io.load_image(data / p) for p in extra if (data / p).is_file()})
  styles = {name: image_io.load_image(data / "train" / "paintings" / f"{name}.jpg") for name in paintings}
  return contents, styles


def psnr(a: np.ndarray, b: np.ndarray) -> float:
  """Peak signal-to-noise ratio in dB of two images in [0, 1] (the MSE floored at 1e-12)."""
  return float(10 * np.log10(1.0 / max(float(np.mean(np.square(np.asarray(a) - np.asarray(b)))), 1e-12)))


def chroma(image: np.ndarray) -> float:
  """Mean of max(R, G, B) - min(R, G, B): 0 for a gray image."""
  image = np.asarray(image, np.float32)
  return float(np.mean(image.max(axis=-1) - image.min(axis=-1)))


def geomean(values: Sequence[float]) -> float:
  """Geometric mean of positive values (of ratios, such as the style reductions)."""
  return float(np.exp(np.mean(np.log(values))))


@dataclasses.dataclass(frozen=True)
class Teacher:
  """The measuring network: the VGG encoder's relu1_1..relu4_1."""

  arch: str
  preprocessing: object
  params: object

  @classmethod
  def from_weights(cls, weights: VGGWeights) -> "Teacher":
    """The teacher of a VGG weight set, its relu1_1..relu4_1 parameters placed on the device."""
    return cls(weights.arch, weights.preprocessing,
               jax.device_put(vgg.params_for(weights.arch, weights.params, adain_ops.STYLE_LAYERS)))

  def stats(self, image: np.ndarray) -> list[adain_ops.Stats]:
    """Channel (mean, std) at relu1_1..relu4_1 of an (H, W, 3) image."""
    return _teacher_stats(self.params, jnp.asarray(image, jnp.float32)[None], arch=self.arch,
                          preprocessing=self.preprocessing)


@functools.partial(jax.jit, static_argnames=("arch", "preprocessing"))
def _teacher_stats(params, images, *, arch, preprocessing):
  feats = adain_ops.encode(params, images, arch=arch, preprocessing=preprocessing, layers=adain_ops.STYLE_LAYERS)
  return [adain_ops.feature_stats(feats[layer]) for layer in adain_ops.STYLE_LAYERS]


def stats_distance(a: Sequence[adain_ops.Stats], b: Sequence[adain_ops.Stats]) -> float:
  """`adain_ops.style_stats_loss` from precomputed statistics."""
  return float(sum(jnp.mean(jnp.square(ma - mb)) + jnp.mean(jnp.square(sa - sb)) for (ma, sa), (mb, sb) in zip(a, b)))


def evaluate(stylize: Callable[..., np.ndarray], teacher: Teacher, contents: Mapping[str, np.ndarray],
             styles: Mapping[str, np.ndarray], *, size: int, keep_outputs: bool = False) -> dict:
  """The held-out record of a stylisation function `stylize(content, style, alpha=...)` at long side `size`.

  Returns:
    {'pairs': {'content/style': {'reduction', 'ssim'}}, 'psnr': {content: dB}, 'chroma': {pair: value},
    'summary': {'reduction_geomean', 'reduction_min', 'ssim_mean', 'psnr_mean', 'gray_style_chroma_max'}} and, with
    `keep_outputs`, 'outputs': {pair: image} (not JSON).
  """
  contents = {k: image_io.resize_long_side(v, size) for k, v in contents.items()}
  styles = {k: image_io.resize_long_side(v, size) for k, v in styles.items()}
  style_stats = {k: teacher.stats(v) for k, v in styles.items()}
  record: dict = {"size": size, "pairs": {}, "psnr": {}, "chroma": {}}
  outputs = {}
  for cname, c in contents.items():
    record["psnr"][cname] = psnr(stylize(c, c, alpha=0.0), c)
    c_stats, c_gray = teacher.stats(c), metrics.gray(c)
    for sname, s in styles.items():
      out = stylize(c, s, alpha=1.0)
      key = f"{cname}/{sname}"
      before = stats_distance(c_stats, style_stats[sname])
      after = stats_distance(teacher.stats(out), style_stats[sname])
      record["pairs"][key] = {"reduction": before / max(after, 1e-12), "ssim": metrics.ssim(metrics.gray(out),
                                                                                              c_gray)}
      if sname in GRAY_STYLES or chroma(s) < 0.01:
        record["chroma"][key] = chroma(out)
      if keep_outputs:
        outputs[key] = out
  reductions = [p["reduction"] for p in record["pairs"].values()]
  record["summary"] = {"reduction_geomean": geomean(reductions), "reduction_min": float(np.min(reductions)),
                       "ssim_mean": float(np.mean([p["ssim"] for p in record["pairs"].values()])),
                       "psnr_mean": float(np.mean(list(record["psnr"].values()))),
                       "gray_style_chroma_max": max(record["chroma"].values(), default=float("nan"))}
  if keep_outputs:
    record["outputs"] = outputs
  return record
