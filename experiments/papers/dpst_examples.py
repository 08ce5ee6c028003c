"""Luan et al. (2017), Deep Photo Style Transfer: the paper's example pairs, ours next to the paper's own results.

Run (from the repository root; needs ../shared/data/photoreal/, skips cleanly without it):
  python -m experiments.papers.dpst_examples             # 12 pairs over 1-30 at 384 px with photoreal's defaults
      # expected: style below the paper's on 11/12 pairs (median ratio 0.51), median SSIM 0.65 vs 0.45,
      # std >= 0.85x and matting per pixel <= 0.44x the paper's on every pair; 270-420 s per pair, 69 min in all
      # on a 2-core CPU (add --resume to continue an interrupted run)
  python -m experiments.papers.dpst_examples --quick     # pairs 1, 7, 14, 20 at 256 px
  python -m experiments.papers.dpst_examples --method wct --out_dir outputs/dpst_wct   # the fast method, 512 px
      # expected: median style ratio 0.75, median SSIM 0.51 vs 0.46, std >= 0.82x and matting <= 0.93x the
      # paper's on every pair, 5-12 s a pair after the first call; 6.5 min in all
  python -m experiments.papers.dpst_examples --method wct --gray_target --out_dir outputs/dpst_wct_gray
      # each pair's target grayed: the result's mean YIQ chroma should be <= 0.01
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
  content's colours, i.e. more photorealistic);
* chroma_error: mean over pixels of the YIQ chroma distance |(ΔI, ΔQ)| to the paper's result (0 for the paper's);
* chroma: mean YIQ chroma |(I, Q)| of the image (a gray image: 0).

`--method wct` runs the fast method instead (`nst_jax.methods.photoreal.photowct`: PhotoWCT and the closed-form
smoothing) at 512 px, each pair twice: `seconds` is the second call's (the first compiles for the pair's size).
Its bar: median style ratio <= 1.0, median SSIM >= the paper's - 0.02, on every pair gray std >= 0.8x and matting
<= the paper's, and <= 20 s a pair.

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
from nst_jax.losses import color
from nst_jax.errors import NSTError, exit_on_error
from nst_jax.io import image_io
from nst_jax.losses import matting
from nst_jax.methods import gatys, photoreal
from nst_jax.methods.photoreal import photowct
from nst_jax.models import wct_decoder
from nst_jax.weights.format import VGGWeights
from nst_jax.weights.store import find_trained_file, resolve_weights

from experiments import common

DEFAULT_PAIRS = "1,3,5,7,10,13,14,17,20,24,27,30"
QUICK = dict(size=256, iterations=photoreal.PhotorealConfig.stage1_iterations, pairs="1,7,14,20")
FULL = dict(size=384, iterations=photoreal.PhotorealConfig.stage1_iterations, pairs=DEFAULT_PAIRS)
METRICS = ("style", "ssim", "std", "matting", "chroma_error", "chroma")
WCT_SIZE = 512
DEFAULT_DECODERS = "photowct-decoders-hed-vgg16"


def iq(image: np.ndarray) -> np.ndarray:
  """(H, W, 2) YIQ chroma (I, Q) of an RGB image."""
  return np.asarray(color.rgb_to_yiq(np.asarray(image, np.float32)))[..., 1:]


def chroma(image: np.ndarray) -> np.ndarray:
  """(H, W) YIQ chroma magnitude |(I, Q)| of an RGB image."""
  return np.linalg.norm(iq(image), axis=-1)


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
            style_seg: np.ndarray, weights: VGGWeights, paper: np.ndarray) -> dict[str, dict[str, float]]:
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
                 "matting": float(energy(jnp.asarray(image))) / (shape[0] * shape[1]),
                 "chroma_error": float(np.mean(np.linalg.norm(iq(image) - iq(paper), axis=-1))),
                 "chroma": float(np.mean(chroma(image)))}
          for name, image in images.items()}


def acceptance(records: dict, method: str = "optimize") -> dict:
  """The acceptance bar of a photorealistic method (medians against the paper's results), from the per-pair numbers.

  optimize: lower style loss on 10 of 12 pairs, median ratio <= 0.8; wct: median ratio <= 1.0 and <= 20 s a pair.
  Both: median SSIM >= the paper's - 0.02; on every pair gray std >= 0.8x and matting energy <= the paper's."""
  ours = {n: r["ours"] for n, r in records.items()}
  paper = {n: r["paper"] for n, r in records.items()}
  ratios = [ours[n]["style"] / paper[n]["style"] for n in records]
  lower = sum(r < 1 for r in ratios)
  need = int(np.ceil(len(records) * 10 / 12)) if method == "optimize" else 0
  ssim_gap = (statistics.median(o["ssim"] for o in ours.values())
              - statistics.median(p["ssim"] for p in paper.values()))
  out = {"pairs_with_lower_style": lower, "pairs": len(records), "needed": need,
         "median_style_ratio": statistics.median(ratios), "style_ratio_bar": 0.8 if method == "optimize" else 1.0,
         "median_ssim_minus_paper": ssim_gap,
         "min_std_ratio": min(ours[n]["std"] / paper[n]["std"] for n in records),
         "max_matting_ratio": max(ours[n]["matting"] / paper[n]["matting"] for n in records),
         "max_seconds": max(r["seconds"] for r in records.values())}
  out["met"] = bool(lower >= need and out["median_style_ratio"] <= out["style_ratio_bar"] and ssim_gap >= -0.02
                    and out["min_std_ratio"] >= 0.8 and out["max_matting_ratio"] <= 1.0
                    and (method == "optimize" or out["max_seconds"] <= 20.0))
  return out


def run(settings: common.Settings, *, pairs: list[int], config: photoreal.PhotorealConfig,
        resume: bool = False, method: str = "optimize", decoders: str = DEFAULT_DECODERS,
        gray_target: bool = False) -> dict:
  """`config`'s size is replaced by `settings.size`. Each finished pair is recorded in `<out_dir>/partial.json`;
  with `resume`, pairs recorded there under the same config (and their saved images) are not run again.

  `method` 'wct' runs `photowct` with the `decoders` file (name or path) instead of the optimisation;
  `gray_target` grays each pair's target photo first (and the paper's result, which is then only a reference)."""
  started = time.perf_counter()
  root = find_photoreal(settings.data_dir)
  if root is None:
    print(f"[data] no photoreal/ folder under {settings.data_dir!r}: nothing to do")
    return {"skipped": "no data"}
  weights = resolve_weights(settings.weights)
  config = dataclasses.replace(config, size=settings.size)
  model = None
  if method == "wct":
    path = find_trained_file(decoders)
    if path is None:
      raise NSTError(f"--decoders {decoders!r}: no such PhotoWCT decoder file")
    model = photowct.make_model(weights, wct_decoder.load_decoders(path))
  rows, labels, records, skipped = [], [], {}, {}
  partial_path = pathlib.Path(settings.out_dir) / "partial.json"
  config_record = common.to_jsonable(dataclasses.asdict(config))
  config_record.update(method=method, decoders=decoders, gray_target=gray_target)
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
    if gray_target:
      raw["style"] = np.repeat(metrics.gray(raw["style"])[..., None], 3, axis=-1)
      raw["paper"] = np.repeat(metrics.gray(raw["paper"])[..., None], 3, axis=-1)
    content = image_io.resize_long_side(raw["content"], settings.size)
    paper = image_io.resize(raw["paper"], *content.shape[:2])
    if n in done and (pathlib.Path(settings.out_dir) / f"ours{n}.png").exists():
      records[n] = done[n]
      ours, theirs = done[n]["ours"], done[n]["paper"]
      rows.append([content, raw["style"], image_io.load_image(pathlib.Path(settings.out_dir) / f"ours{n}.png"), paper])
      labels.append(pair_labels(n, ours, theirs))
      continue
    if method == "wct":
      result, seconds, extra = run_photowct(model, raw, size=settings.size)
    else:
      t0 = time.perf_counter()
      result = photoreal.photoreal(content=raw["content"], style=raw["style"], weights=weights, config=config,
                                   content_seg=raw["content_seg"], style_seg=raw["style_seg"],
                                   progress=not settings.quick)
      seconds = time.perf_counter() - t0
      extra = {"stage1_terms": result.stage1.final_terms if result.stage1 else None,
               "stage2_terms": result.stage2.final_terms if result.stage2 else None,
               "iterations_run": [len(s.loss_history) if s else 0 for s in (result.stage1, result.stage2)]}
    measured = measure({"ours": result.image, "unsmoothed": result.unsmoothed, "paper": paper}, content=content,
                       style=raw["style"], content_seg=raw["content_seg"], style_seg=raw["style_seg"],
                       weights=weights, paper=paper)
    ours, theirs = measured["ours"], measured["paper"]
    records[n] = {"seconds": round(seconds, 1), "ours": ours, "ours_unsmoothed": measured["unsmoothed"],
                  "paper": theirs, **extra}
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
      "medians": medians, "config": config_record, "acceptance": acceptance(records, method)},
      started=started)
  write_markdown(pathlib.Path(settings.out_dir) / "results.md", record)
  return record


@dataclasses.dataclass(frozen=True)
class FastResult:
  """The fast method's images under the names the optimisation's result uses."""

  image: np.ndarray
  unsmoothed: np.ndarray


def run_photowct(model: photowct.Model, raw: dict, *, size: int) -> tuple[FastResult, float, dict]:
  """One pair with the fast method, twice: (its result, the second call's seconds, the record's extra fields)."""
  kwargs = dict(size=size, model=model, content_seg=raw["content_seg"], style_seg=raw["style_seg"])
  t0 = time.perf_counter()
  photowct.stylize_at_size(raw["content"], raw["style"], **kwargs)
  first = time.perf_counter() - t0
  t0 = time.perf_counter()
  result = photowct.stylize_at_size(raw["content"], raw["style"], **kwargs)
  seconds = time.perf_counter() - t0
  extra = {"first_call_seconds": round(first, 1), "step_seconds": {k: round(v, 2) for k, v in result.seconds.items()},
           "smoothing_iterations": result.smoothing_iterations}
  return FastResult(result.image, result.transferred), seconds, extra


def pair_labels(n: int, ours: dict, theirs: dict) -> list[str]:
  return [f"in{n}", f"tar{n}", f"ours: style {common.short(ours['style'])} ssim {ours['ssim']:.2f}",
          f"paper: style {common.short(theirs['style'])} ssim {theirs['ssim']:.2f}"]


def write_markdown(path: pathlib.Path, record: dict) -> None:
  c = record["config"]
  how = ("PhotoWCT + closed-form smoothing" if c.get("method") == "wct"
         else f"{c['stage1_iterations']}+{c['stage2_iterations']} iterations")
  gray = ", targets grayed" if c.get("gray_target") else ""
  lines = [f"# Deep Photo Style Transfer examples: {c['size']} px, {how}{gray}, {record['seconds_total']:.0f} s total",
           ""]
  rows = [[n, f"{r['seconds']:.1f}", f"{r['ours']['style']:.4g}", f"{r['paper']['style']:.4g}",
           f"{r['ours']['style'] / r['paper']['style']:.2f}"]
          + [f"{r[who][m]:{spec}}" for m, spec in (("ssim", ".3f"), ("std", ".3f"), ("matting", ".3g"))
             for who in ("ours", "paper")]
          + [f"{r['ours']['chroma_error']:.4f}", f"{r['ours']['chroma']:.4f}", f"{r['paper']['chroma']:.4f}"]
          for n, r in list(record["pairs"].items()) + [("**median**", record["medians"])]]
  lines += common.markdown_table(["pair", "s", "style ours", "style paper", "ratio", "SSIM ours", "SSIM paper",
                                  "std ours", "std paper", "matting ours", "matting paper",
                                  "chroma error to paper", "chroma ours", "chroma paper"], rows)
  a = record["acceptance"]
  lines += ["", f"Lower style loss than the paper on {a['pairs_with_lower_style']} of {a['pairs']} pairs (needed "
            f"{a['needed']}); median style ratio {a['median_style_ratio']:.2f} (bar {a['style_ratio_bar']}); median "
            f"SSIM minus the paper's {a['median_ssim_minus_paper']:+.3f} (bar -0.02); lowest std ratio "
            f"{a['min_std_ratio']:.2f} (bar 0.8); highest matting ratio {a['max_matting_ratio']:.2f} (bar 1); "
            f"slowest pair {a['max_seconds']:.1f} s. Met: {a['met']}."]
  if record["skipped"]:
    lines += ["", "Skipped: " + "; ".join(f"{n}: {why}" for n, why in record["skipped"].items())]
  common.write_markdown(path, lines)


def config_from_flags() -> photoreal.PhotorealConfig:
  f = flags.FLAGS
  base = photoreal.PAPER_PRESET if f.preset == "paper" else photoreal.PhotorealConfig()
  given = {name: f[name].value for name in ("objective", "init", "content_weight", "style_weight", "tv_weight",
                                             "matting_weight", "stage1_size", "stage2_iterations",
                                             "region_chroma", "chroma_fit")
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
    if f.method == "wct":
      full = dict(full, size=WCT_SIZE)
    settings = common.settings_from_flags(quick=quick, full=full)
    pairs = [int(p) for p in (f.pairs or (quick if f.quick else full)["pairs"]).split(",") if p.strip()]
    run(settings, pairs=pairs, config=config, resume=f.resume, method=f.method, decoders=f.decoders,
        gray_target=f.gray_target)


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
  flags.DEFINE_enum("method", "optimize", ["optimize", "wct"], "optimize: Luan et al.'s optimisation; wct: "
                    "PhotoWCT and the closed-form smoothing (Li et al. 2018), 512 px by default.")
  flags.DEFINE_string("decoders", DEFAULT_DECODERS, "wct: the PhotoWCT decoder file or name.")
  flags.DEFINE_bool("region_chroma", None, "optimize: each region's chroma from its style region before the "
                    "post-processing (photoreal's default if unset).")
  flags.DEFINE_bool("chroma_fit", None, "optimize: each region's chroma refitted as a function of the content's "
                    "colour before --region_chroma (photoreal's default if unset).")
  flags.DEFINE_bool("gray_target", False, "Gray each pair's target (and the paper's result) first.")
  flags.DEFINE_bool("resume", False, "Skip the pairs already recorded in <out_dir>/partial.json under the same "
                    "settings (a long run continues where it stopped).")
  app.run(main)
