"""The network the objective reads its features from: Gatys et al.'s normalised parameters, one image's
features and the guides carried through the network, each compiled once per structure."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.io import image_io
from nst_jax.losses import guidance
from nst_jax.models import vgg
from nst_jax.weights.format import VGGWeights


# Normalised parameters by (digest of the parameters' bytes, pooling): computing them costs a few forward passes,
# and the pyramid of `nst_jax.highres` asks for them once per scale. Keyed by content, so equal weights share an
# entry and no entry can be confused with other weights.
_NORMALIZED: dict[tuple[str, str], dict] = {}


def params_digest(params: Mapping) -> str:
  """A digest of every parameter's name, shape, dtype and bytes."""
  digest = hashlib.blake2b(digest_size=16)
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    leaf = np.ascontiguousarray(leaf)
    digest.update(f"{jax.tree_util.keystr(path)}{leaf.shape}{leaf.dtype}".encode())
    digest.update(leaf.tobytes())
  return digest.hexdigest()


def normalized_params(weights: VGGWeights, pooling: str) -> dict:
  """`vgg.normalize_activations` of the weights over a fixed, generated reference set (the demo photo and the two
  generated paintings at 128 px), so that the loss scale does not depend on the images of a run. Remembered for
  the last few weight sets (by content), since it costs a few forward passes."""
  key = (params_digest(weights.params), pooling)
  if key not in _NORMALIZED:
    from nst_jax import demo  # matplotlib's sample photo; imported only when this is asked for
    references = [demo.default_content(), demo.swirl_painting(128), demo.mosaic_painting(128)]
    images = [weights.preprocessing.apply(jnp.asarray(image_io.resize_long_side(x, 128)))[None]
              for x in references]
    if len(_NORMALIZED) >= 4:
      _NORMALIZED.pop(next(iter(_NORMALIZED)))
    _NORMALIZED[key] = vgg.normalize_activations(weights.arch, weights.params, images, pooling=pooling)
  return _NORMALIZED[key]


@functools.partial(jax.jit, static_argnums=(0, 1))
def network_features(model: vgg.VGG, preprocessing, params: Mapping, image: jax.Array) -> dict[str, jax.Array]:
  """`model`'s features of one (H, W, 3) image in [0, 1] (compiled once per network, preprocessing and shape)."""
  return model.apply({"params": params}, preprocessing.apply(image)[None])


masks_at_layers = jax.jit(guidance.masks_at_layers, static_argnames=("arch", "layers", "pooling"))
