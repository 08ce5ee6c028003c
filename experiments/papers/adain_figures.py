"""AdaIN (Huang & Belongie 2017): the held-out evaluation (acceptance numbers and a contact sheet), and
the paper's alpha-sweep and style-interpolation figures.

Run (from the repository root):
  nice -n 19 python -m experiments.papers.adain_figures           # 512 px, 11 held-out contents x 8 held-out paintings
  python -m experiments.papers.adain_figures --quick              # 256 px, the 4 x 4 learning-curve subset: ~1 min
  python -m experiments.papers.adain_figures --decoder outputs/x.npz --out_dir outputs/adain_eval_x   # another decoder

The held-out split is `nst_jax/methods/adain/evaluation.py` (10 photos and 8 paintings of ../shared/data/train never
trained on, plus golden_gate.jpg). Writes to --out_dir (default outputs/adain_figures; never commit it, the images
are third-party): results.json with per pair the teacher's style-statistics reduction and the SSIM of the output's
luma to the content's, per content the reconstruction PSNR at alpha = 0, the chroma of the outputs with the
grayscale style (the pencil sketch), and the 512x512 stylisation latency (median of 3 after a warm-up, style
statistics computed once); holdout.png (each content with its output for every style), alpha_sweep.png and
interpolation.png. The acceptance bar: reduction geometric mean >= 4x and minimum >= 2x, mean SSIM >=
0.45, mean PSNR >= 18 dB. Measured with the shipped decoder: see README, "AdaIN", and docs/adain.md.

  python -m experiments.papers.adain_figures --quick --optimum_steps 300 --decoder <a VGG-encoder decoder>
also optimises each pair's image directly on the decoder's training objective (Adam on the pixels, from the
content) to show how far a decoder is from what its own objective allows (VGG-encoder decoders only).
Without ../shared/data the demo images stand in (matplotlib's photo, generated paintings).
"""

from __future__ import annotations

import pathlib
import statistics
import time

import jax
import numpy as np
from absl import app, flags

from nst_jax import demo, figures
from nst_jax.errors import NSTError, exit_on_error
from nst_jax.io import atomic, image_io
from nst_jax.methods.adain import evaluation as adain_eval, objective as adain_objective, stylize as adain
from nst_jax.models import adain_decoder
from nst_jax.weights import adain_decoders
from nst_jax.weights.store import resolve_weights

DATA = pathlib.Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def images(data: pathlib.Path, quick: bool) -> tuple[dict, dict]:
  if (data / "train" / "photos").is_dir():
    if quick:
      return adain_eval.load_holdout(data, photos=adain_eval.CURVE_PHOTOS, paintings=adain_eval.CURVE_PAINTINGS,
                                     extra=())
    return adain_eval.load_holdout(data)
  print(f"[data] {data} absent: using the demo images")
  return ({"grace_hopper": demo.default_content()},
          {"swirl": demo.swirl_painting(384, seed=5), "mosaic": demo.mosaic_painting(384, seed=5)})


def optimum_record(model: adain.Model, teacher: adain_eval.Teacher, content: np.ndarray, style: np.ndarray,
                   output: np.ndarray, *, before: float, steps: int, style_weight: float) -> dict:
  """The decoder's output against direct optimisation of its own training objective for this pair."""
  out_terms, optimum, opt_terms = adain_objective.objective_optimum(model, content, style, output,
                                                                style_weight=style_weight, steps=steps)
  after = adain_eval.stats_distance(teacher.stats(optimum), teacher.stats(style))
  return {"steps": steps, "style_weight": style_weight, "decoder_terms": out_terms, "terms": opt_terms,
          "reduction": before / after, "image": optimum}


def holdout_sheet(contents: dict, styles: dict, record: dict, size: int) -> np.ndarray:
  """Row 0: the styles; then one row per content: the content and its output for every style, labelled with the
  reduction and SSIM."""
  rows = [[None] + list(styles.values())]
  labels = [[""] + [name.split("__")[-1][:24] for name in styles]]
  for cname, c in contents.items():
    rows.append([c] + [record["outputs"][f"{cname}/{sname}"] for sname in styles])
    labels.append([cname.split("__")[-1][:24]] + [
        f"{record['pairs'][f'{cname}/{s}']['reduction']:.1f}x ssim {record['pairs'][f'{cname}/{s}']['ssim']:.2f}"
        for s in styles])
  return figures.contact_sheet(rows, labels, cell_height=min(size, 160))


def run(*, size: int, quick: bool, decoder: str, weights: str, data_dir: pathlib.Path, out_dir: pathlib.Path,
        optimum_steps: int = 0, style_colors: bool = True) -> dict:
  if optimum_steps < 0:
    raise NSTError(f"--optimum_steps must be >= 0, got {optimum_steps}")
  vgg_weights = resolve_weights(weights)
  ckpt = adain_decoders.resolve_decoder(decoder)
  model = adain.make_model(vgg_weights, ckpt)
  if optimum_steps and model.student_width:
    raise NSTError("--optimum_steps needs a decoder that runs the VGG encoder")
  teacher = adain_eval.Teacher.from_weights(vgg_weights)
  contents, styles = images(data_dir, quick)
  stylize = lambda c, s, alpha: adain.stylize(c, [s], model=model, alpha=alpha,  # noqa: E731
                                              style_colors=style_colors)
  record = adain_eval.evaluate(stylize, teacher, contents, styles, size=size, keep_outputs=True)
  record.update(decoder=decoder, contents=list(contents), styles=list(styles), style_colors=style_colors)
  contents = {k: image_io.resize_long_side(v, size) for k, v in contents.items()}
  styles = {k: image_io.resize_long_side(v, size) for k, v in styles.items()}
  image_io.save_image(out_dir / "holdout.png", holdout_sheet(contents, styles, record, size))
  outputs = record.pop("outputs")
  if optimum_steps:  # content, style, decoder output, optimised image: one row per pair
    rows, labels = [], []
    for name, p in record["pairs"].items():
      cname, sname = name.split("/")
      before = adain_eval.stats_distance(teacher.stats(contents[cname]), teacher.stats(styles[sname]))
      opt = p["optimum"] = optimum_record(model, teacher, contents[cname], styles[sname], outputs[name],
                                          before=before, steps=optimum_steps,
                                          style_weight=ckpt.info.get("style_weight", 10.0))
      rows.append([contents[cname], styles[sname], outputs[name], opt.pop("image")])
      labels.append([cname, sname, f"decoder {p['reduction']:.1f}x", f"optimised {opt['reduction']:.0f}x"])
    image_io.save_image(out_dir / "optimum.png", figures.contact_sheet(rows, labels, cell_height=min(size, 192)))
    record["summary"]["optimum_reduction_geomean"] = adain_eval.geomean(
        [p["optimum"]["reduction"] for p in record["pairs"].values()])
  # Figures.
  cname, c = next(iter(contents.items()))
  (s1name, s1), (s2name, s2) = list(styles.items())[:2]
  row = [c, s1] + [adain.stylize(c, [s1], model=model, alpha=a) for a in ALPHAS]
  sheet = figures.contact_sheet([row], [[cname[-24:], s1name[-24:]] + [f"alpha {a}" for a in ALPHAS]],
                                cell_height=min(size, 256))
  image_io.save_image(out_dir / "alpha_sweep.png", sheet)
  mix = [(1.0, 0.0), (0.75, 0.25), (0.5, 0.5), (0.25, 0.75), (0.0, 1.0)]
  row = [s1] + [adain.stylize(c, [s1, s2], model=model, style_weights=w) for w in mix] + [s2]
  sheet = figures.contact_sheet([row], [[s1name[-24:]] + [f"{w[0]:g}:{w[1]:g}" for w in mix] + [s2name[-24:]]],
                                cell_height=min(size, 256))
  image_io.save_image(out_dir / "interpolation.png", sheet)
  # Latency at 512x512: the style's statistics once (as the CLI's cache does), then one stylisation.
  square = image_io.resize(c, 512, 512)
  stats = [adain.style_statistics(model, s1)]
  adain.stylize(square, [], model=model, style_stats=stats)
  times = []
  for _ in range(3):
    start = time.perf_counter()
    adain.stylize(square, [], model=model, style_stats=stats)
    times.append(time.perf_counter() - start)
  record["latency_512_s"] = {"median": statistics.median(times), "all": times, "device": str(jax.devices()[0]),
                             "note": "shared 2-core CPU: inflated by other processes"}
  atomic.write_json(out_dir / "results.json", record)
  summary = record["summary"]
  print(f"reduction geomean {summary['reduction_geomean']:.2f}x (min {summary['reduction_min']:.2f}x), "
        f"SSIM {summary['ssim_mean']:.3f}, PSNR {summary['psnr_mean']:.2f} dB, gray-style chroma "
        f"{summary['gray_style_chroma_max']:.4f}, 512x512 {statistics.median(times):.2f} s\n"
        f"wrote {out_dir}/holdout.png, alpha_sweep.png, interpolation.png, "
        f"{'optimum.png, ' if optimum_steps else ''}results.json")
  return record


if __name__ == "__main__":
  flags.DEFINE_bool("quick", False, "256 px and the 4x4 learning-curve pairs instead of 512 px and 11x8.")
  flags.DEFINE_integer("size", None, "Long side (default 256 with --quick, else 512).")
  flags.DEFINE_string("decoder", adain_decoder.DEFAULT_DECODER, "Decoder .npz or name.")
  flags.DEFINE_string("weights", "hed-vgg16", "VGG weights: the measuring network (and the encoder of decoders "
                      "without their own).")
  flags.DEFINE_string("data_dir", str(DATA), "The shared images (demo images when absent).")
  flags.DEFINE_string("out_dir", "outputs/adain_figures", "Output folder.")
  flags.DEFINE_bool("style_colors", True, "Give outputs the style's chroma statistics (adain.stylize).")
  flags.DEFINE_integer("optimum_steps", 0, "Also optimise each stylised pair's image directly on the decoder's "
                       "training objective for this many Adam steps (0: off), to compare the decoder with it.")

  def main(argv):
    del argv
    f = flags.FLAGS
    with exit_on_error():
      run(size=f.size or (256 if f.quick else 512), quick=f.quick, decoder=f.decoder, weights=f.weights,
          data_dir=pathlib.Path(f.data_dir), out_dir=pathlib.Path(f.out_dir), optimum_steps=f.optimum_steps,
          style_colors=f.style_colors)

  app.run(main)
