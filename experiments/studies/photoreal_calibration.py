"""The per-layer style weights of photoreal's calibrated objective, measured at the reference's operating point.

The calibrated style term of layer l is a relative error, T_l = sum_r α_r E(G_r, A_r) / E(0, A_r) (each region's
Gram error divided by its target's magnitude), so it does not depend on the scale of the layer's activations. How
much each layer should count is then a property of the method, not of the network: this script reads it off the
paper's own results (the reference's VGG19 optimum, post-processed), evaluating T_l at them with the network in use.
Their median T_l grows with depth (the reference matched fine statistics closely and coarse ones loosely), and
the weights w_l = T_1 / T_l make every layer's weighted error equal at that operating point:
`nst_jax.photoreal.CALIBRATED_LAYER_WEIGHTS`.

A second check asks whether the paper's results are stationary points of the calibrated objective under some
non-negative weights (which would also fix the content and matting weights): non-negative least squares of
min_w |sum_t w_t grad_t(x_p)|² with the relu1_1 weight held at 1. They are not (relative residual ~1, i.e. no
weighting cancels the fine layers' gradient: the post-processed results are not optima of a VGG objective), so the
content, style and matting weights are set by `experiments/papers/dpst_examples.py` sweeps instead
(docs/photoreal.md).

Run (from the repository root; needs ../shared/data/photoreal/):
  python -m experiments.studies.photoreal_calibration                       # 12 pairs at 384 px
  python -m experiments.studies.photoreal_calibration --pairs 1,7,14 --size 256

Writes outputs/photoreal_calibration/results.json. Expected: docs/photoreal.md §3.
"""

from __future__ import annotations

import pathlib
import statistics

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
from absl import app, flags

from nst_jax import losses
from nst_jax.errors import NSTError, exit_on_error
from nst_jax.io import image_io
from nst_jax.losses import guidance, matting
from nst_jax.methods import gatys, photoreal
from nst_jax.models import vgg
from nst_jax.weights.store import resolve_weights

from experiments import common
from experiments.papers import dpst_examples

flags.DEFINE_integer("size", 384, "Long side in pixels.")
flags.DEFINE_string("pairs", dpst_examples.DEFAULT_PAIRS, "Pairs of the paper's examples.")
flags.DEFINE_string("data_dir", common.DEFAULT_DATA_DIR, "Folder holding photoreal/.")
flags.DEFINE_string("out_dir", "outputs/photoreal_calibration", "Folder for results.json.")
FLAGS = flags.FLAGS


def terms_and_gradients(*, image, content, style, content_seg, style_seg,
                        weights) -> tuple[dict[str, float], dict[str, np.ndarray]]:
  """({term: value}, {term: gradient}) at `image` of the calibrated terms with unit weights: 'content',
  'style/<layer>' for each style layer, 'matting' (energy per pixel)."""
  shape = image.shape[:2]
  config = photoreal.PhotorealConfig(size=max(shape), content_weight=1.0, style_weight=1.0, matting_weight=1.0,
                                     range_weight=0.0)
  cfg = photoreal.stylize_config(config, stage=2, shape=shape, input_scale=weights.preprocessing.input_scale)
  problem = gatys.build_problem(content=content, styles=[style], weights=weights, config=cfg,
                                content_seg=content_seg, style_seg=style_seg)
  inputs = problem.inputs
  model = vgg.VGG(weights.arch, tuple(dict.fromkeys(cfg.content_layers + cfg.style_layers)), pooling=cfg.pooling)

  def terms(x):
    feats = model.apply({"params": inputs["params"]}, weights.preprocessing.apply(x)[None])
    out = {"content": losses.content_loss(features=feats, targets=inputs["content"],
                                          layer_weights=inputs["content_weights"])}
    for name in cfg.style_layers:
      out[f"style/{name}"] = guidance.guided_style_loss(
          features={name: feats[name]}, target_grams={name: inputs["style"][name]},
          masks={name: inputs["masks"][name]}, region_weights=inputs["region_weights"][name],
          layer_weights={name: 1.0}, normalization=cfg.gram_normalization)
    out["matting"] = matting.matting_energy(image=x, laplacian=inputs["matting"]) / (shape[0] * shape[1])
    return out

  x = jnp.asarray(image, jnp.float32)
  values = {name: float(v) for name, v in jax.jit(terms)(x).items()}
  grads = jax.jit(jax.jacrev(terms))(x)
  return values, {name: np.asarray(g, np.float64).reshape(-1) for name, g in grads.items()}


def stationary_weights(grads: dict[str, np.ndarray], *, anchor: str = "style/relu1_1") -> dict[str, float]:
  """Non-negative w with w[anchor] = 1 minimising |sum_t w_t g_t|² (`scipy.optimize.nnls`), and the residual's
  norm relative to |g_anchor| (how nearly stationary the image is under those weights)."""
  others = [name for name in grads if name != anchor]
  design = np.stack([grads[name] for name in others], axis=1)
  solution, residual = scipy.optimize.nnls(design, -grads[anchor])
  return {anchor: 1.0, **dict(zip(others, solution.tolist())),
          "relative_residual": residual / np.linalg.norm(grads[anchor])}


def main(argv):
  del argv
  with exit_on_error():
    root = dpst_examples.find_photoreal(FLAGS.data_dir)
    if root is None:
      raise NSTError(f"no photoreal/ folder under {FLAGS.data_dir!r}")
    weights = resolve_weights("hed-vgg16")
    fits, layer_errors = {}, {}
    for n in [int(p) for p in FLAGS.pairs.split(",")]:
      files = dpst_examples.pair_files(root, n)
      try:
        raw = {k: image_io.load_image(p, what=f"pair {n} {k}") for k, p in files.items()}
      except NSTError as e:
        print(f"[pair {n}] skipped: {e}")
        continue
      content = image_io.resize_long_side(raw["content"], FLAGS.size)
      paper = image_io.resize(raw["paper"], *content.shape[:2])
      values, grads = terms_and_gradients(image=paper, content=content, style=raw["style"],
                                          content_seg=raw["content_seg"], style_seg=raw["style_seg"],
                                          weights=weights)
      layer_errors[n] = {k.split("/")[1]: v for k, v in values.items() if k.startswith("style/")}
      fits[n] = stationary_weights(grads)
      print(f"[pair {n}] T_l " + " ".join(f"{k}={v:.3g}" for k, v in layer_errors[n].items())
            + " | stationarity fit " + " ".join(f"{k}={v:.3g}" for k, v in fits[n].items()), flush=True)
    median_errors = {k: statistics.median(e[k] for e in layer_errors.values()) for k in photoreal.CALIBRATED_LAYER_WEIGHTS}
    layer_weights = {k: median_errors["relu1_1"] / v for k, v in median_errors.items()}
    residual = statistics.median(f["relative_residual"] for f in fits.values())
    print("median T_l: " + " ".join(f"{k}={v:.3g}" for k, v in median_errors.items()))
    print("layer weights w_l = T_1 / T_l: " + " ".join(f"{k}={v:.2f}" for k, v in layer_weights.items()))
    print(f"stationarity fit: median relative residual {residual:.3f}")
    common.write_json(pathlib.Path(FLAGS.out_dir) / "results.json",
                      {"size": FLAGS.size, "layer_errors": layer_errors, "median_layer_errors": median_errors,
                       "layer_weights": layer_weights, "stationarity_fits": fits,
                       "median_stationarity_residual": residual})


if __name__ == "__main__":
  app.run(main)
