"""Gram reductions and content loss of any result, against NumPy references on a random VGG16."""

import numpy as np
import pytest

from nst_jax.methods import transfer_measures
from nst_jax.models import vgg
from nst_jax.models.preprocessing import CAFFE_VGG
from nst_jax.weights.format import VGGWeights


@pytest.fixture(scope="module")
def measurer():
  weights = VGGWeights("vgg16", vgg.random_params("vgg16", seed=4), CAFFE_VGG, "random", "1" * 64)
  return transfer_measures.Measurer(weights), weights


def np_gram_distance(weights, image, styles, blend):
  layers = transfer_measures.GRAM_LAYERS
  model = vgg.VGG("vgg16", layers, pooling="avg")
  params = vgg.params_for("vgg16", weights.params, layers)

  def grams(x):
    f = model.apply({"params": params}, CAFFE_VGG.apply(x[None].astype(np.float32)))
    return {k: np.einsum("hwi,hwj->ij", np.asarray(v[0], np.float64), np.asarray(v[0], np.float64))
            / (v.shape[1] * v.shape[2]) for k, v in f.items()}

  w = np.asarray(blend, np.float64) / np.sum(blend)
  target = {k: sum(wi * grams(s)[k] for wi, s in zip(w, styles)) for k in layers}
  g = grams(image)
  return {k: np.sum(np.square(g[k] - target[k])) / (4 * g[k].shape[0] ** 2) for k in layers}


def test_gram_distances_match_numpy_for_a_blend(measurer):
  m, weights = measurer
  rng = np.random.default_rng(0)
  image = rng.random((32, 48, 3)).astype(np.float32)
  styles = [rng.random((40, 40, 3)).astype(np.float32), rng.random((24, 36, 3)).astype(np.float32) ** 2]
  got = m.gram_distances(image, m.style_grams(styles, [3.0, 1.0]))
  want = np_gram_distance(weights, image, styles, [3.0, 1.0])
  for k in transfer_measures.GRAM_LAYERS:
    assert got[k] == pytest.approx(want[k], rel=2e-3), k


def test_reductions_are_one_for_the_content_and_grow_towards_the_style(measurer):
  m, _ = measurer
  rng = np.random.default_rng(1)
  content = rng.random((32, 32, 3)).astype(np.float32)
  style = np.clip(rng.random((32, 32, 3)) * 0.3 + 0.6, 0, 1).astype(np.float32)
  target = m.style_grams([style])
  same = transfer_measures.gram_reductions(m, content, content, target)
  assert all(v == pytest.approx(1.0) for v in same.values())
  halfway = transfer_measures.gram_reductions(m, 0.5 * content + 0.5 * style, content, target)
  closer = transfer_measures.gram_reductions(m, 0.1 * content + 0.9 * style, content, target)
  assert all(closer[k] > max(halfway[k], 2.0) for k in halfway), (halfway, closer)
  assert m.content_loss(content, content) == 0.0 and m.content_loss(style, content) > 0
