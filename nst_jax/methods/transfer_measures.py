"""Network measures of a stylised image, the same for every method: Gram distances to the style and the content loss.

Per-layer Gram distances are Gatys et al.'s E_l (`nst_jax.losses.style_layer_loss`), on the default network as
Gatys transfer uses it (the raw weights, `StylizeConfig`'s pooling):

  Gram reduction of layer l = E_l(content, style) / E_l(result, style),

with the result and the content at the same size and the style at the size it was transferred at: how many times
closer to the style's second-order statistics the result is than the photo was (1: no change). Several styles
count as their blend-weighted mean Gram matrix, as in a Gatys blend.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import losses
from nst_jax.models import vgg
from nst_jax.objective.config import StylizeConfig
from nst_jax.weights.format import VGGWeights

GRAM_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"


@functools.partial(jax.jit, static_argnames=("arch", "preprocessing", "pooling", "layers"))
def _features(params, image, *, arch, preprocessing, pooling, layers):
  return vgg.VGG(arch, layers, pooling=pooling).apply({"params": params}, preprocessing.apply(image[None]))


@functools.partial(jax.jit, static_argnames=("arch", "preprocessing", "pooling", "layers"))
def _grams(params, image, *, arch, preprocessing, pooling, layers):
  feats = _features(params, image, arch=arch, preprocessing=preprocessing, pooling=pooling, layers=layers)
  return {k: losses.gram_matrix(v)[0] for k, v in feats.items()}


class Measurer:
  """Gram matrices and content features of images on one network (jitted per image size)."""

  def __init__(self, weights: VGGWeights, *, pooling: str = StylizeConfig.pooling) -> None:
    layers = GRAM_LAYERS + (CONTENT_LAYER,)
    self._params = jax.device_put(vgg.params_for(weights.arch, weights.params, layers))
    self._kw = dict(arch=weights.arch, preprocessing=weights.preprocessing, pooling=pooling)

  def grams(self, image: np.ndarray) -> dict[str, np.ndarray]:
    """{layer: N x N Gram matrix F^T F / M} of an RGB [0, 1] image at GRAM_LAYERS."""
    return jax.device_get(_grams(self._params, jnp.asarray(image, jnp.float32), layers=GRAM_LAYERS, **self._kw))

  def style_grams(self, styles: Sequence[np.ndarray], blend: Sequence[float] | None = None) -> dict[str, np.ndarray]:
    """The blend-weighted mean of the styles' Gram matrices (equal weights by default)."""
    w = np.ones(len(styles)) if blend is None else np.asarray(blend, np.float64)
    w = w / w.sum()
    grams = [self.grams(s) for s in styles]
    return {k: sum(wi * g[k] for wi, g in zip(w, grams)) for k in GRAM_LAYERS}

  def gram_distances(self, image: np.ndarray, target: Mapping[str, np.ndarray]) -> dict[str, float]:
    """{layer: E_l(image, target Gram)}."""
    grams = self.grams(image)
    return {k: float(losses.style_layer_loss(gram=jnp.asarray(grams[k]), target_gram=jnp.asarray(target[k])))
            for k in GRAM_LAYERS}

  def content_loss(self, image: np.ndarray, content: np.ndarray) -> float:
    """Content loss mean((F(image) - F(content))^2) at CONTENT_LAYER (images of one size)."""
    f = [_features(self._params, jnp.asarray(x, jnp.float32), layers=(CONTENT_LAYER,), **self._kw)[CONTENT_LAYER]
         for x in (image, content)]
    return float(jnp.mean(jnp.square(f[0] - f[1])))


def gram_reductions(measurer: Measurer, image: np.ndarray, content: np.ndarray,
                    target: Mapping[str, np.ndarray]) -> dict[str, float]:
  """{layer: E_l(content, target) / E_l(image, target)} (module docstring)."""
  before = measurer.gram_distances(content, target)
  after = measurer.gram_distances(image, target)
  return {k: before[k] / max(after[k], 1e-30) for k in GRAM_LAYERS}
