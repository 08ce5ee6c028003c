"""AdaIN (Huang & Belongie 2017): the paper's alpha sweep and style-interpolation figures, and an evaluation of the
shipped decoder on held-out images it was not trained on.

Run (from the repository root):
  python -m experiments.adain_figures --quick   # 256 px, 2 held-out contents x 2 styles: ~1-2 min, 2-core CPU
  python -m experiments.adain_figures           # 512 px, 5 held-out contents x 4 held-out styles

Writes outputs/adain_figures/alpha_sweep.png (content, style, alpha = 0 .. 1), interpolation.png (two styles mixed
with weights 1:0 .. 0:1) and results.json with, on the held-out images of experiments/train_adain.py (contents
in5, in12, in21, in28, golden_gate; styles tar5, tar21, starry_night, shipwreck):
  - reconstruction PSNR: decoder(encoder(content)) (alpha = 0, i.e. content = style) against the content;
  - style-statistics loss (sum over relu1_1..relu4_1 of the squared differences of channel means and stds) of the
    stylised output against the style, divided into that of the content image itself: the "reduction";
  - the latency of one 512x512 stylisation (median of 3, after a warm-up; the CPU is shared, so it is inflated);
  - with --optimum_steps N, per pair: the decoder's training objective (content + style_weight * style terms) for
    its output, against the image found by optimising that objective directly (N Adam steps on the pixels from the
    content), and that image's reduction: how far the decoder is from what its own objective asks; optimum.png shows
    content, style, decoder output and optimised image for each pair.
Expected with the shipped decoder (measured, 2-core CPU): PSNR mean 14.4 dB, reduction geometric mean 2.4x
(min 1.45x, max 4.9x), 512x512 in ~3 s; the AdaIN issue's bar, >= 5x for every pair, is not reached (README, "AdaIN").
  python -m experiments.adain_figures --quick --optimum_steps 300   # + direct optimisation: 19 min (busy 2-core CPU)
Expected (measured): the optimised images reach a 257x reduction (geometric mean of the 4 quick pairs, against the
decoder's 2.6x), with the objective 44x below the decoder's and both of its terms lower: the objective allows far
more than the decoder has learned, i.e. the decoder is under-trained rather than its objective too weak.
Without ../shared/data the demo images stand in (matplotlib's photo, generated paintings).
"""

from __future__ import annotations

import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from nst_jax import demo, figures
from nst_jax.io import atomic, image_io
from nst_jax.methods import adain, adain_train
from nst_jax.models import adain_decoder
from nst_jax.errors import NSTError, exit_on_error
from nst_jax.weights.store import resolve_weights

DATA = pathlib.Path(__file__).resolve().parent.parent / ".." / "shared" / "data"
HELD_OUT_CONTENTS = ("photoreal/input/in5.png", "photoreal/input/in12.png", "photoreal/input/in21.png",
                     "photoreal/input/in28.png", "artistic/content/golden_gate.jpg")
HELD_OUT_STYLES = ("artistic/style/starry_night.jpg", "artistic/style/shipwreck.jpg", "photoreal/style/tar5.png",
                   "photoreal/style/tar21.png")
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def images(data: pathlib.Path, quick: bool) -> tuple[dict, dict]:
  if (data / "photoreal").is_dir():
    contents = {pathlib.Path(p).stem: image_io.load_image(data / p) for p in HELD_OUT_CONTENTS[:2 if quick else 5]}
    styles = {pathlib.Path(p).stem: image_io.load_image(data / p) for p in HELD_OUT_STYLES[:2 if quick else 4]}
  else:
    print(f"[data] {data} absent: using the demo images")
    contents = {"grace_hopper": demo.default_content()}
    styles = {"swirl": demo.swirl_painting(384, seed=5), "mosaic": demo.mosaic_painting(384, seed=5)}
  return contents, styles


def psnr(a: np.ndarray, b: np.ndarray) -> float:
  return float(10 * np.log10(1.0 / np.mean(np.square(a - b))))


def style_distance(model: adain.Model, image: np.ndarray, style: np.ndarray) -> float:
  feats = [adain.features(model, adain.pad_to_multiple(x), adain.STYLE_LAYERS)  # pylint: disable=protected-access
           for x in (image, style)]
  return float(adain.style_stats_loss(output_feats=feats[0], style_feats=feats[1]))


def geomean(values) -> float:
  return float(np.exp(np.mean(np.log(values))))


def optimum_record(model: adain.Model, content: np.ndarray, style: np.ndarray, output: np.ndarray, *, before: float,
                   steps: int, style_weight: float) -> dict:
  """The decoder's output against direct optimisation of its own training objective for this pair."""
  out_terms, optimum, opt_terms = adain_train.objective_optimum(model, content, style, output,
                                                                style_weight=style_weight, steps=steps)
  return {"steps": steps, "style_weight": style_weight, "decoder_terms": out_terms, "terms": opt_terms,
          "reduction": before / style_distance(model, optimum, style), "image": optimum}


def run(*, size: int, quick: bool, decoder: str, weights: str, data_dir: pathlib.Path, out_dir: pathlib.Path,
        optimum_steps: int = 0) -> dict:
  if optimum_steps < 0:
    raise NSTError(f"--optimum_steps must be >= 0, got {optimum_steps}")
  ckpt = adain_decoder.resolve_decoder(decoder)
  model = adain.make_model(resolve_weights(weights), ckpt)
  contents, styles = images(data_dir, quick)
  contents = {k: image_io.resize_long_side(v, size) for k, v in contents.items()}
  styles = {k: image_io.resize_long_side(v, size) for k, v in styles.items()}
  record: dict = {"size": size, "decoder": decoder, "contents": list(contents), "styles": list(styles)}
  # Reconstruction.
  record["psnr"] = {name: psnr(adain.stylize(c, [c], model=model, alpha=0.0), c) for name, c in contents.items()}
  # Style statistics before and after.
  pairs, outputs = {}, {}
  for cname, c in contents.items():
    for sname, s in styles.items():
      out = outputs[f"{cname}/{sname}"] = adain.stylize(c, [s], model=model)
      before, after = style_distance(model, c, s), style_distance(model, out, s)
      pairs[f"{cname}/{sname}"] = {"content_vs_style": before, "stylized_vs_style": after,
                                   "reduction": before / after}
      if optimum_steps:
        pairs[f"{cname}/{sname}"]["optimum"] = optimum_record(model, c, s, out, before=before, steps=optimum_steps,
                                                              style_weight=ckpt.info.get("style_weight", 10.0))
  if optimum_steps:  # content, style, decoder output, optimised image: one row per pair
    rows, labels = [], []
    for name, p in pairs.items():
      cname, sname = name.split("/")
      opt = p["optimum"]
      rows.append([contents[cname], styles[sname], outputs[name], opt.pop("image")])
      labels.append([cname, sname, f"decoder {p['reduction']:.1f}x", f"optimised {opt['reduction']:.0f}x"])
    image_io.save_image(out_dir / "optimum.png", figures.contact_sheet(rows, labels, cell_height=min(size, 192)))
  record["style_loss"] = pairs
  reductions = [p["reduction"] for p in pairs.values()]
  record["summary"] = {"psnr_mean": float(np.mean(list(record["psnr"].values()))),
                       "reduction_min": float(np.min(reductions)),
                       "reduction_geomean": geomean(reductions)}
  if optimum_steps:
    record["summary"]["optimum_reduction_geomean"] = geomean([p["optimum"]["reduction"] for p in pairs.values()])
    record["summary"]["optimum_objective_ratio_geomean"] = geomean(
        [p["optimum"]["decoder_terms"]["objective"] / p["optimum"]["terms"]["objective"] for p in pairs.values()])
  # Figures.
  cname, c = next(iter(contents.items()))
  (s1name, s1), (s2name, s2) = list(styles.items())[:2]
  row = [c, s1] + [adain.stylize(c, [s1], model=model, alpha=a) for a in ALPHAS]
  sheet = figures.contact_sheet([row], [[cname, s1name] + [f"alpha {a}" for a in ALPHAS]],
                                cell_height=min(size, 256))
  image_io.save_image(out_dir / "alpha_sweep.png", sheet)
  mix = [(1.0, 0.0), (0.75, 0.25), (0.5, 0.5), (0.25, 0.75), (0.0, 1.0)]
  row = [s1] + [adain.stylize(c, [s1, s2], model=model, style_weights=w) for w in mix] + [s2]
  sheet = figures.contact_sheet([row], [[s1name] + [f"{w[0]:g}:{w[1]:g}" for w in mix] + [s2name]],
                                cell_height=min(size, 256))
  image_io.save_image(out_dir / "interpolation.png", sheet)
  # Latency at 512x512.
  square = image_io.resize(c, 512, 512)
  adain.stylize(square, [s1], model=model)
  times = []
  for _ in range(3):
    start = time.perf_counter()
    jax.block_until_ready(jnp.asarray(adain.stylize(square, [s1], model=model)))
    times.append(time.perf_counter() - start)
  record["latency_512_s"] = {"median": statistics.median(times), "all": times, "device": str(jax.devices()[0]),
                             "note": "shared 2-core CPU: inflated by other processes"}
  atomic.write_json(out_dir / "results.json", record)
  optimum = (f"direct optimisation of the training objective ({optimum_steps} Adam steps per pair): reduction "
             f"geomean {record['summary']['optimum_reduction_geomean']:.1f}x, objective "
             f"{record['summary']['optimum_objective_ratio_geomean']:.1f}x below the decoder's\n"
             if optimum_steps else "")
  print(f"PSNR {record['psnr']}\nstyle-loss reduction min {record['summary']['reduction_min']:.1f}x, "
        f"geomean {record['summary']['reduction_geomean']:.1f}x\n{optimum}"
        f"512x512 latency {statistics.median(times):.2f} s\n"
        f"wrote {out_dir}/alpha_sweep.png, interpolation.png, {'optimum.png, ' if optimum_steps else ''}"
        "results.json")
  return record


if __name__ == "__main__":
  flags.DEFINE_bool("quick", False, "256 px and 2x2 held-out pairs instead of 512 px and 5x4.")
  flags.DEFINE_integer("size", None, "Long side (default 256 with --quick, else 512).")
  flags.DEFINE_string("decoder", adain_decoder.DEFAULT_DECODER, "Decoder .npz or name.")
  flags.DEFINE_string("weights", "hed-vgg16", "Encoder weights.")
  flags.DEFINE_string("data_dir", str(DATA), "The shared test images (demo images when absent).")
  flags.DEFINE_string("out_dir", "outputs/adain_figures", "Output folder.")
  flags.DEFINE_integer("optimum_steps", 0, "Also optimise each stylised pair's image directly on the decoder's "
                       "training objective for this many Adam steps (0: off), to compare the decoder with it.")

  def main(argv):
    del argv
    f = flags.FLAGS
    with exit_on_error():
      run(size=f.size or (256 if f.quick else 512), quick=f.quick, decoder=f.decoder, weights=f.weights,
          data_dir=pathlib.Path(f.data_dir), out_dir=pathlib.Path(f.out_dir), optimum_steps=f.optimum_steps)

  app.run(main)
