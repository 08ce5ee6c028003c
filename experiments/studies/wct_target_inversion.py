"""How far an ideal WCT decoder gets: the image optimised to have exactly WCT's target features at one level.

Run (from the repository root; needs ../shared/data/reference/neural-style/, skips cleanly without it):
  python -m experiments.studies.wct_target_inversion --pairs golden_gate_starry,golden_gate_scream --level relu2_1
  python -m experiments.studies.wct_target_inversion --quick          # golden_gate_starry, 128 px, 60 steps

For each picture: the content's features at --level are whitened and coloured with the style's (`wct.ops`,
t = WCT(f_c, f_s)), and an image x, started at the content, follows Adam on the relative feature error
mean((enc(x) - t)^2) / mean(t^2) (pixels kept in [0, 1]). A decoder trained to invert the encoder can at best
produce such an x, so its Gram reductions (`transfer_measures.gram_reductions`, the default network's style-loss
pooling) bound what better inversion buys. Expected (256 px, 200-300 steps): the relative error stalls near 0.1
(t is not the feature map of any image) and the reductions stay far below the classic picture's, on
golden_gate_starry relu2_1 8x at relu2_1 (the classic: 35x), and under the reductions that the reconstruction
decoders reach in the cascade on golden_gate_scream and tubingen_seated_nude: the decoders' inventions, not
their fidelity, carry the style (docs/wct.md §5). Writes results.json and one PNG
per picture under --out_dir.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags

from nst_jax.io import image_io
from nst_jax.methods import transfer_measures
from nst_jax.methods.wct import ops, train as wct_train
from nst_jax.weights.store import resolve_weights

from experiments.studies import classic_comparison
from experiments import common


def invert(weights, content: np.ndarray, style: np.ndarray, *, level: str, steps: int, lr: float = 0.01,
           report_every: int = 50, measure=None) -> tuple[np.ndarray, list[dict]]:
  """(x, history): the image whose features at `level` approach WCT(content, style)'s; history holds the relative
  error at the start and every `report_every` steps (with `measure(x)` when given)."""
  kw = dict(arch=weights.arch, preprocessing=weights.preprocessing, layer=level)

  def encode(x):
    return wct_train.encode(weights.params, x[None], **kw)[0]

  target = ops.wct(encode(jnp.asarray(content)), ops.style_transform(encode(jnp.asarray(style))))
  scale = jnp.mean(jnp.square(target))
  optimizer = optax.adam(lr)

  @jax.jit
  def step(x, state):
    error, grad = jax.value_and_grad(lambda y: jnp.mean(jnp.square(encode(y) - target)) / scale)(x)
    updates, state = optimizer.update(grad, state)
    return jnp.clip(optax.apply_updates(x, updates), 0.0, 1.0), state, error

  x = jnp.asarray(content, jnp.float32)
  state = optimizer.init(x)
  history = [{"step": 0, "relative_error": float(jnp.mean(jnp.square(encode(x) - target)) / scale)}]
  for i in range(steps):
    x, state, error = step(x, state)
    if (i + 1) % report_every == 0 or i + 1 == steps:
      entry = {"step": i + 1, "relative_error": float(error)}
      if measure is not None:
        entry.update(measure(np.asarray(x)))
      history.append(entry)
  return np.asarray(x), history


def run(settings: common.Settings, *, pictures: list[str], level: str) -> dict:
  started = time.perf_counter()
  root = classic_comparison.find_reference(settings.data_dir)
  if root is None:
    print(f"[data] no reference/neural-style/ under {settings.data_dir!r}: nothing to do")
    return {"skipped": "no data"}
  images, weights = common.Images(settings.data_dir), resolve_weights(settings.weights)
  measurer = transfer_measures.Measurer(weights)
  record = {"level": level, "size": settings.size, "steps": settings.iterations, "pictures": {}}
  for name in pictures:
    content_name, style_names, _ = classic_comparison.PICTURES[name]
    content = image_io.resize_long_side(images.content(content_name), settings.size)
    style = image_io.resize_long_side(images.style(style_names[0]), settings.size)
    target = measurer.style_grams([style])
    classic = image_io.resize(image_io.load_image(root / f"{name}.png", what="reference"), *content.shape[:2])
    measure = lambda x: transfer_measures.gram_reductions(measurer, x, content, target)  # noqa: E731
    x, history = invert(weights, content, style, level=level, steps=settings.iterations, measure=measure)
    record["pictures"][name] = {"history": history, "classic": measure(classic)}
    image_io.save_image(settings.out_dir / f"{name}_{level}.png", x)
    last = history[-1]
    print(f"[{name}] {level}: relative error {last['relative_error']:.3f}; reductions "
          + ", ".join(f"{k} {last[k]:.1f} (classic {record['pictures'][name]['classic'][k]:.1f})"
                      for k in transfer_measures.GRAM_LAYERS), flush=True)
  record["seconds"] = time.perf_counter() - started
  common.write_json(settings.out_dir / "results.json", record)
  return record


if __name__ == "__main__":
  flags.DEFINE_list("pairs", ["golden_gate_starry"], "Reference pictures (file stems).")
  flags.DEFINE_string("level", "relu2_1", "The WCT level whose target is inverted.")
  common.app_run(lambda settings: run(settings, pictures=flags.FLAGS.pairs, level=flags.FLAGS.level), __file__,
                 quick=dict(size=128, iterations=60), full=dict(size=256, iterations=300))
