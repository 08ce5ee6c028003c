"""Luan et al. (2017), Deep Photo Style Transfer: the paper's example pairs, ours next to the paper's own results.

Run (from the repository root; needs ../shared/data/photoreal/, skips cleanly without it):
  python -m experiments.papers.dpst_examples             # 12 pairs over 1-30 at 384 px with photoreal's defaults
      # expected: style below the paper's on 12/12 pairs (median ratio 0.49), median SSIM 0.65 vs 0.45,
      # std >= 0.85x and matting per pixel <= 0.43x the paper's on every pair; 265-612 s per pair, 72 min in all
      # on a 2-core CPU (add --resume to continue an interrupted run)
  python -m experiments.papers.dpst_examples --quick     # pairs 1, 7, 14, 20 at 256 px
  python -m experiments.papers.dpst_examples --preset paper --pairs 3   # the reference's size and iterations (slow)
  python -m experiments.papers.dpst_examples --objective reference --init mean --stage2_iterations 100 --quick
      # the reference code's objective in its own units and its near-constant start (the study's baseline)

For each pair: `nst_jax.methods.photoreal` with the segmentation maps (both stages and the local-affine post-processing;
any PhotorealConfig field not given keeps photoreal's default). Writes outputs/dpst_examples/sheet.png (per pair:
content | style | ours | the paper's reference/best<N>.png), results.json and results.md with, for ours and for the
paper's result, both measured by the same code at our output size:

* style: the reference's segmented style loss (sum over relu1_1..relu5_1 and matched colours of
  100 · mean(content mask) · MSE of the (F⊙m)(F⊙m)ᵀ/(C·H·W·mean(m)) Gram matrices) against the style image, with
  this project's VGG16 (the paper used VGG19, so absolute values are not the paper's) -- a fixed yardstick,
  whatever objective the run optimised;
* ssim: SSIM of the gray image to the gray content (`nst_jax.metrics.ssim`);
* std: standard deviation of the gray image (contrast: a hazy result has a low one);
* matting: sum_c p_cᵀ L p_c / (H·W) with the content's matting Laplacian (lower = more locally affine in the
  content's colours, i.e. more photorealistic).

and the acceptance bar: ours has a lower style loss than the paper's on at least 10 of 12 pairs (the same
fraction otherwise) with a median ratio <= 0.8; median SSIM >= the paper's - 0.02; and on every pair gray std >=
0.8x the paper's and matting energy <= the paper's. A pair whose files do not decode (the shared copy of
style/tar23.png is a 23-byte text stub) is skipped and listed.

Expected with the defaults (docs/photoreal.md has the measured table and the study behind them).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from nst_jax import figures, metrics
from nst_jax.errors import NSTError, exit_on_error
from nst_jax.io import image_io
from nst_jax.losses import matting
from nst_jax.methods import gatys, photoreal
from nst_jax.weights.format import VGGWeights
from nst_jax.weights.store import resolve_weights

from experiments import common

DEFAULT_PAIRS = "1,3,5,7,10,13,14,17,20,24,27,30"
QUICK = dict(size=256, iterations=photoreal.PhotorealConfig.stage1_iterations, pairs="1,7,14,20")
FULL = dict(size=384, iterations=photoreal.PhotorealConfig.stage1_iterations, pairs=DEFAULT_PAIRS)
METRICS = ("style", "ssim", "std", "matting")


def pair_files(root: pathlib.Path, n: int) -> dict[str, pathlib.Path]:
  return {"content": root / "input" / f"in{n}.png", "style": root / "style" / f"tar{n}.png",
          "content_seg": root / "segmentation" / f"in{n}.png", "style_seg": root / "segmentation" / f"tar{n}.png",
          "paper": root / "reference" / f"best{n}.png"}


def find_photoreal(data_dir: str) -> pathlib.Path | None:
  path = pathlib.Path(data_dir)
  for base in ([path] if path.is_absolute() else [pathlib.Path.cwd() / path, common.REPO_ROOT / path]):
    if (base / "photoreal" / "input").is_dir():
      return (base / "photoreal").resolve()
  return None


def measure(images: dict[str, np.ndarray], *, content: np.ndarray, style: np.ndarray, content_seg: np.ndarray,
            style_seg: np.ndarray, weights: VGGWeights) -> dict[str, dict[str, float]]:
  """The numbers of the module docstring for each image (already at the content's measuring size), all from one
  problem and one compilation. The style loss is always the reference's (objective "reference", default
  layers), whatever the measured images were optimised for."""
  shape = content.shape[:2]
  yardstick = photoreal.PhotorealConfig(size=max(shape), objective="reference", stage1_iterations=1)
  cfg = photoreal.stylize_config(yardstick, stage=1, shape=shape, input_scale=weights.preprocessing.input_scale)
  cfg = dataclasses.replace(cfg, content_weight=0.0, tv_weight=0.0, range_weight=0.0, iterations=1)
  problem = gatys.build_problem(content=content, styles=[style], weights=weights, config=cfg,
                                content_seg=content_seg, style_seg=style_seg)
  # With our weight mapping (100 · 4 · #layers on E = MSE / 4, layer weights 1/#layers) this is the reference's loss.
  style_loss = jax.jit(lambda x, inputs: problem.terms_fn(x, inputs)["style"])
  lap = matting.precompute(content)
  energy = jax.jit(lambda x: matting.matting_energy(image=x, laplacian=lap))
  return {name: {"style": float(style_loss(jnp.asarray(image), problem.inputs)),
                 "ssim": metrics.ssim(metrics.gray(image), metrics.gray(content)),
                 "std": float(np.std(metrics.gray(image))),
                 "matting": float(energy(jnp.asarray(image))) / (shape[0] * shape[1])}
          for name, image in images.items()}


def acceptance(records: dict) -> dict:
  """The acceptance bar of the photorealistic path (medians against the paper's results), from the per-pair numbers."""
  ours = {n: r["ours"] for n, r in records.items()}
  paper = {n: r["paper"] for n, r in records.items()}
  ratios = [ours[n]["style"] / paper[n]["style"] for n in records]
  lower = sum(r < 1 for r in ratios)
  need = int(np.ceil(len(records) * 10 / 12))
  return {"pairs_with_lower_style": lower, "pairs": len(records), "needed": need,
          "median_style_ratio": statistics.median(ratios),
          "median_ssim_minus_paper": statistics.median(o["ssim"] for o in ours.values())
                                     - statistics.median(p["ssim"] for p in paper.values()),
          "min_std_ratio": min(ours[n]["std"] / paper[n]["std"] for n in records),
          "max_matting_ratio": max(ours[n]["matting"] / paper[n]["matting"] for n in records),
          "met": bool(lower >= need and statistics.median(ratios) <= 0.8
                      and statistics.median(o["ssim"] for o in ours.values())
                      >= statistics.median(p["ssim"] for p in paper.values()) - 0.02
                      and all(ours[n]["std"] >= 0.8 * paper[n]["std"] for n in records)
                      and all(ours[n]["matting"] <= paper[n]["matting"] for n in records))}


def run(settings: common.Settings, *, pairs: list[int], config: photoreal.PhotorealConfig,
        resume: bool = False) -> dict:
  """`config`'s size is replaced by `settings.size`. Each finished pair is recorded in `<out_dir>/partial.json`;
  with `resume`, pairs recorded there under the same config (and their saved images) are not run again."""
  started = time.perf_counter()
  root = find_photoreal(settings.data_dir)
  if root is None:
    print(f"[data] no photoreal/ folder under {settings.data_dir!r}: nothing to do")
    return {"skipped": "no data"}
  weights = resolve_weights(settings.weights)
  config = dataclasses.replace(config, size=settings.size)
  rows, labels, records, skipped = [], [], {}, {}
  partial_path = pathlib.Path(settings.out_dir) / "partial.json"
  config_record = common.to_jsonable(dataclasses.asdict(config))
  done = {}
  if resume and partial_path.exists():
    partial = json.loads(partial_path.read_text())
    if partial["config"] == config_record:
      done = {int(n): r for n, r in partial["pairs"].items()}
      print(f"[resume] pairs already done under this config: {sorted(done)}")
    else:
      print(f"[resume] {partial_path} was made with another config: running every pair")
  for n in pairs:
    files = pair_files(root, n)
    try:
      raw = {k: image_io.load_image(p, what=f"pair {n} {k}") for k, p in files.items()}
    except NSTError as e:
      skipped[n] = str(e)
      print(f"[pair {n}] skipped: {e}")
      continue
    content = image_io.resize_long_side(raw["content"], settings.size)
    paper = image_io.resize(raw["paper"], *content.shape[:2])
    if n in done and (pathlib.Path(settings.out_dir) / f"ours{n}.png").exists():
      records[n] = done[n]
      ours, theirs = done[n]["ours"], done[n]["paper"]
      rows.append([content, raw["style"], image_io.load_image(pathlib.Path(settings.out_dir) / f"ours{n}.png"), paper])
      labels.append(pair_labels(n, ours, theirs))
      continue
    t0 = time.perf_counter()
    result = photoreal.photoreal(content=raw["content"], style=raw["style"], weights=weights, config=config,
                                 content_seg=raw["content_seg"], style_seg=raw["style_seg"],
                                 progress=not settings.quick)
    seconds = time.perf_counter() - t0
    measured = measure({"ours": result.image, "unsmoothed": result.unsmoothed, "paper": paper}, content=content,
                       style=raw["style"], content_seg=raw["content_seg"], style_seg=raw["style_seg"],
                       weights=weights)
    ours, theirs = measured["ours"], measured["paper"]
    records[n] = {"seconds": round(seconds, 1), "ours": ours, "ours_unsmoothed": measured["unsmoothed"],
                  "paper": theirs, "stage1_terms": result.stage1.final_terms if result.stage1 else None,
                  "stage2_terms": result.stage2.final_terms if result.stage2 else None,
                  "iterations_run": [len(s.loss_history) if s else 0 for s in (result.stage1, result.stage2)]}
    print(f"[pair {n}] {seconds:.0f} s; " + " | ".join(
        f"{who} style {m['style']:.4g} ssim {m['ssim']:.3f} std {m['std']:.3f} matting {m['matting']:.3g}"
        for who, m in (("ours", ours), ("paper", theirs))), flush=True)
    image_io.save_image(pathlib.Path(settings.out_dir) / f"ours{n}.png", result.image)
    image_io.save_image(pathlib.Path(settings.out_dir) / f"ours{n}_unsmoothed.png", result.unsmoothed)
    common.write_json(partial_path, {"config": config_record, "pairs": records})
    rows.append([content, raw["style"], result.image, paper])
    labels.append(pair_labels(n, ours, theirs))
  if not records:
    raise NSTError(f"none of the pairs {pairs} could be read from {root}")
  medians = {who: {m: statistics.median(r[who][m] for r in records.values()) for m in METRICS}
             for who in ("ours", "ours_unsmoothed", "paper")}
  medians["seconds"] = statistics.median(r["seconds"] for r in records.values())
  sheet = figures.contact_sheet(rows, labels, cell_height=min(200, settings.size))
  record = common.write_outputs(settings, sheet, {
      "figure": "Luan et al. 2017 examples", "data": str(root), "pairs": records, "skipped": skipped,
      "medians": medians, "config": dataclasses.asdict(config), "acceptance": acceptance(records)},
      started=started)
  write_markdown(pathlib.Path(settings.out_dir) / "results.md", record)
  return record


def pair_labels(n: int, ours: dict, theirs: dict) -> list[str]:
  return [f"in{n}", f"tar{n}", f"ours: style {common.short(ours['style'])} ssim {ours['ssim']:.2f}",
          f"paper: style {common.short(theirs['style'])} ssim {theirs['ssim']:.2f}"]


def write_markdown(path: pathlib.Path, record: dict) -> None:
  c = record["config"]
  lines = [f"# Deep Photo Style Transfer examples: {c['size']} px, {c['stage1_iterations']}+"
           f"{c['stage2_iterations']} iterations, {record['seconds_total']:.0f} s total", ""]
  rows = [[n, f"{r['seconds']:.0f}", f"{r['ours']['style']:.4g}", f"{r['paper']['style']:.4g}",
           f"{r['ours']['style'] / r['paper']['style']:.2f}"]
          + [f"{r[who][m]:{spec}}" for m, spec in (("ssim", ".3f"), ("std", ".3f"), ("matting", ".3g"))
             for who in ("ours", "paper")]
          for n, r in list(record["pairs"].items()) + [("**median**", record["medians"])]]
  lines += common.markdown_table(["pair", "s", "style ours", "style paper", "ratio", "SSIM ours", "SSIM paper",
                                  "std ours", "std paper", "matting ours", "matting paper"], rows)
  a = record["acceptance"]
  lines += ["", f"Lower style loss than the paper on {a['pairs_with_lower_style']} of {a['pairs']} pairs (needed "
            f"{a['needed']}); median style ratio {a['median_style_ratio']:.2f} (bar 0.8); median SSIM minus the "
            f"paper's {a['median_ssim_minus_paper']:+.3f} (bar -0.02); lowest std ratio {a['min_std_ratio']:.2f} "
            f"(bar 0.8); highest matting ratio {a['max_matting_ratio']:.2f} (bar 1). Met: {a['met']}."]
  if record["skipped"]:
    lines += ["", "Skipped: " + "; ".join(f"{n}: {why}" for n, why in record["skipped"].items())]
  common.write_markdown(path, lines)


def config_from_flags() -> photoreal.PhotorealConfig:
  f = flags.FLAGS
  base = photoreal.PAPER_PRESET if f.preset == "paper" else photoreal.PhotorealConfig()
  given = {name: f[name].value for name in ("objective", "init", "content_weight", "style_weight", "tv_weight",
                                             "matting_weight", "stage1_size", "stage2_iterations")
           if f[name].present}
  if f["iterations"].present:
    given["stage1_iterations"] = f.iterations
  if f.style_layer_weights:
    given["style_layer_weights"] = {k: float(v) for k, v in (item.split("=") for item in f.style_layer_weights)}
  return dataclasses.replace(base, log_every=50, **given)


def main(argv):
  del argv
  f = flags.FLAGS
  with exit_on_error():
    config = config_from_flags()
    quick = dict(QUICK, iterations=config.stage1_iterations)
    full = dict(FULL, size=config.size if f.preset == "paper" else FULL["size"], iterations=config.stage1_iterations)
    settings = common.settings_from_flags(quick=quick, full=full)
    pairs = [int(p) for p in (f.pairs or (quick if f.quick else full)["pairs"]).split(",") if p.strip()]
    run(settings, pairs=pairs, config=config, resume=f.resume)


if __name__ == "__main__":
  common.define_flags("dpst_examples", quick=QUICK, full=FULL)
  flags.DEFINE_string("pairs", None, f"Comma-separated pair numbers (default {DEFAULT_PAIRS}; --quick 1,7,14,20).")
  flags.DEFINE_enum("preset", "default", ["default", "paper"], "paper: the reference's size and iterations.")
  flags.DEFINE_enum("objective", None, list(photoreal.OBJECTIVES), "Loss weighting (photoreal's default if unset).")
  flags.DEFINE_string("init", None, "Stage-1 start: colors, mean, content, noise (photoreal's default if unset).")
  flags.DEFINE_float("content_weight", None, "Content weight (the objective's default if unset).")
  flags.DEFINE_float("style_weight", None, "Style weight (the objective's default if unset).")
  flags.DEFINE_float("tv_weight", None, "TV weight (the objective's default if unset).")
  flags.DEFINE_float("matting_weight", None, "Stage-2 λ (the objective's default if unset).")
  flags.DEFINE_integer("stage1_size", None, "Stage-1 long side (coarse to fine; photoreal's default if unset).")
  flags.DEFINE_integer("stage2_iterations", None, "Stage-2 iterations (photoreal's default if unset).")
  flags.DEFINE_list("style_layer_weights", [], "Calibrated per-layer weights, e.g. relu1_1=1,relu5_1=0.1.")
  flags.DEFINE_bool("resume", False, "Skip the pairs already recorded in <out_dir>/partial.json under the same "
                    "settings (a long run continues where it stopped).")
  app.run(main)
