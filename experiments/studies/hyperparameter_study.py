"""Hyperparameter study: optimizer x learning rate x style weight x iterations, Tübingen in starry_night.

Run (from the repository root):
  python -m experiments.studies.hyperparameter_study --quick   # 64 px, 40 iterations, 10 runs: 45-65 s, 2-core CPU
  python -m experiments.studies.hyperparameter_study           # 256 px, 300 iterations, 39 runs (GPU advised)

Grid (--quick in brackets):
  optimizer      lbfgs (zoom line search, so no learning rate), adam, sgd (momentum 0.9, gradients divided by their
                 mean magnitude: --normalize_gradients), adamw (default weight decay 1e-4) [lbfgs, adam, sgd]
  learning rate  0.003, 0.01, 0.03, 0.1 for the first-order optimizers [0.005, 0.03]
  style weight   1, 10, 100 [1, 10]
  iterations     read off the loss curves: the total loss is recorded at 25%, 50% and 100% of the budget.
Content weight 1, tv weight 10, content init, everything else the library defaults.

Selection criterion (printed at the end). The total loss of runs with different style weights is a different
objective, so it is compared only within one style weight. A run is eligible if it stayed finite and its style term
fell at least 10x. Within each style weight, each (optimizer, learning rate) gets its final total loss divided by
the lowest eligible one of that style weight (1.0 = the winner there). The best setting is the (optimizer, learning
rate) eligible at every style weight with the lowest geometric mean of that ratio; the same is reported at 25% and
50% of the budget (the iterations dimension: which setting is ahead with fewer iterations). Style weight itself is
an aesthetic choice, not picked by loss; the sheet shows its effect.

Writes outputs/hyperparameter_study/sheet.png (row 1: content and style; then one row per optimizer/learning rate,
one column per style weight), loss_curves.png (total loss vs iteration, log scale, one panel per style weight) and
results.json (every run: settings, loss_history, checkpoints, initial/final terms, seconds; the ranking and the
chosen setting).

Expected (--quick, seen): L-BFGS is best at every checkpoint (25%, 50%, 100%) and both style weights, ~3x lower
final loss than the runner-up; at 100% normalised SGD+momentum lr 0.005 is second (3.0x), adam lr 0.03 third
(4.5x), adam lr 0.005 last (19x, too small a step for 40 iterations); SGD+momentum at lr 0.03 oscillates (loss
jumps up and down by 10x) and is not eligible (style fell < 10x), its images are noisy. Style weights 1 and 10 give
nearly the same images: at this normalisation both are deep in the style-dominated regime.
"""

import math
import pathlib
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from nst_jax import figures  # pylint: disable=wrong-import-position
from nst_jax.engines.optimize import NonFiniteLossError
from nst_jax.objective.config import StylizeConfig
from nst_jax.weights.store import resolve_weights  # pylint: disable=wrong-import-position

from experiments import common  # pylint: disable=wrong-import-position

QUICK = dict(size=64, iterations=40)
FULL = dict(size=256, iterations=300)
GRID = {"optimizers": ("lbfgs", "adam", "sgd", "adamw"), "learning_rates": (0.003, 0.01, 0.03, 0.1),
        "style_weights": (1.0, 10.0, 100.0)}
QUICK_GRID = {"optimizers": ("lbfgs", "adam", "sgd"), "learning_rates": (0.005, 0.03), "style_weights": (1.0, 10.0)}
OPTIMIZER_SETTINGS = {"sgd": dict(optimizer_options={"momentum": 0.9}, normalize_gradients=True)}
CHECKPOINTS = (0.25, 0.5, 1.0)
MIN_STYLE_REDUCTION = 10.0
CONTENT, STYLE = "tubingen", "starry_night"


def setting_name(optimizer: str, lr: float | None) -> str:
  return optimizer if lr is None else f"{optimizer} lr {lr:g}"


def checkpoint_losses(history: np.ndarray, final_total: float, iterations: int) -> dict[str, float]:
  """Total loss after round(f * iterations) steps; history[k] is the loss of the image after k steps."""
  out = {}
  for f in CHECKPOINTS:
    k = max(1, round(f * iterations))
    out[f"{f:.0%}"] = float(final_total if k >= len(history) else history[k])
  return out


def choose_best(runs: list[dict], key: str) -> dict:
  """The selection criterion of the module docstring, on checkpoint `key` ('25%', '50%' or '100%')."""
  ratios: dict[str, dict[float, float]] = {}
  for sw in sorted({r["style_weight"] for r in runs}):
    group = [r for r in runs if r["style_weight"] == sw and r["eligible"]]
    if not group:
      continue
    best = min(r["checkpoints"][key] for r in group)
    for r in group:
      ratios.setdefault(r["setting"], {})[sw] = r["checkpoints"][key] / best
  num_weights = len({r["style_weight"] for r in runs})
  scores = {name: math.exp(np.mean(np.log(list(v.values()))))
            for name, v in ratios.items() if len(v) == num_weights}  # eligible at every style weight
  ranking = sorted(scores.items(), key=lambda item: item[1])
  return {"best": ranking[0][0] if ranking else None,
          "ranking": [{"setting": n, "geomean_ratio": s} for n, s in ranking], "ratios": ratios}


def plot_curves(runs: list[dict], style_weights, iterations: int, path) -> None:
  fig, axes = plt.subplots(1, len(style_weights), figsize=(5.5 * len(style_weights), 4.2), squeeze=False)
  optimizers = list(dict.fromkeys(r["optimizer"] for r in runs))
  lrs = sorted({r["lr"] for r in runs if r["lr"] is not None})
  dashes = ["-", "--", ":", "-."]
  for ax, sw in zip(axes[0], style_weights):
    for r in (r for r in runs if r["style_weight"] == sw):
      ax.semilogy(np.arange(len(r["loss_history"])), np.asarray(r["loss_history"], float),
                  color=f"C{optimizers.index(r['optimizer'])}",
                  linestyle="-" if r["lr"] is None else dashes[lrs.index(r["lr"]) % len(dashes)],
                  label=r["setting"] + ("" if r["eligible"] else " (x)"))
    for f in CHECKPOINTS[:-1]:
      ax.axvline(f * iterations, color="0.8", linewidth=0.8)
    ax.set_title(f"style weight {sw:g}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("total loss")
    ax.legend(fontsize=7)
  fig.suptitle("Total loss per iteration ((x): not eligible: diverged or style fell < 10x)")
  common.save_figure(fig, path)
  plt.close(fig)


def run(settings: common.Settings) -> dict:
  started = time.perf_counter()
  images, weights = common.Images(settings.data_dir), resolve_weights(settings.weights)
  content, style = images.content(CONTENT), images.style(STYLE)
  grid = QUICK_GRID if settings.quick else GRID
  settings_list = [(opt, None) if opt == "lbfgs" else (opt, lr)
                   for opt in grid["optimizers"] for lr in ([None] if opt == "lbfgs" else grid["learning_rates"])]
  runs, cells = [], {}
  for opt, lr in settings_list:
    for sw in grid["style_weights"]:
      config = StylizeConfig(size=settings.size, iterations=settings.iterations, optimizer=opt,
                             learning_rate=lr, style_weight=sw, log_every=max(10, settings.iterations // 4),
                             **OPTIMIZER_SETTINGS.get(opt, {}))
      name = setting_name(opt, lr)
      try:
        result, record = common.run_stylize(f"{name}, style weight {sw:g}", content=content, styles=style,
                                            weights=weights, config=config, progress=False)
        image, history, final_total = result.image, result.loss_history, sum(result.final_terms.values())
      except NonFiniteLossError as e:
        print(f"  {name}, style weight {sw:g}: diverged ({e})")
        image, history, final_total, record = e.last_good_image, np.full(settings.iterations, np.nan), math.inf, {
            "diverged_at": e.iteration}
      reduction = record.get("style_reduction")
      runs.append({"setting": name, "optimizer": opt, "lr": lr, "style_weight": sw,
                   "optimizer_options": dict(config.optimizer_options),
                   "normalize_gradients": config.normalize_gradients, **record,
                   "final_total": final_total, "loss_history": history,
                   "checkpoints": checkpoint_losses(history, final_total, settings.iterations),
                   "eligible": bool(math.isfinite(final_total) and reduction is not None
                                    and reduction >= MIN_STYLE_REDUCTION)})
      cells[name, sw] = image
  selection = {key: choose_best(runs, key) for key in (f"{f:.0%}" for f in CHECKPOINTS)}
  best = selection["100%"]["best"]
  print(f"criterion: lowest geometric mean over style weights of final total loss / best final total loss at that "
        f"style weight, among runs that stayed finite with the style term down >= {MIN_STYLE_REDUCTION:g}x")
  for key, chosen in selection.items():
    ranking = ", ".join(f"{r['setting']} {r['geomean_ratio']:.2f}" for r in chosen["ranking"])
    print(f"  best at {key} of {settings.iterations} iterations: {chosen['best']}  (ranking: {ranking})")

  rows = [[content, style]]
  labels = [[f"content: {images.label(CONTENT)}", f"style: {images.label(STYLE)}"]]
  by_key = {(r["setting"], r["style_weight"]): r for r in runs}
  for opt, lr in settings_list:
    name = setting_name(opt, lr)
    rows.append([cells[name, sw] for sw in grid["style_weights"]])
    labels.append([f"{name} sw {sw:g}: {common.short(by_key[name, sw]['final_total'])}"
                   + ("" if by_key[name, sw]["eligible"] else " (x)") + (" *" if name == best else "")
                   for sw in grid["style_weights"]])
  sheet = figures.contact_sheet(rows, labels, cell_height=settings.cell_height)
  curves = pathlib.Path(settings.out_dir) / "loss_curves.png"
  plot_curves(runs, grid["style_weights"], settings.iterations, curves)
  return common.write_outputs(settings, sheet, {
      "figure": "hyperparameter study", "images": images.source, "content": CONTENT, "style": images.label(STYLE),
      "grid": grid, "optimizer_settings": OPTIMIZER_SETTINGS, "checkpoints": CHECKPOINTS,
      "criterion": (f"eligible: finite and style term fell >= {MIN_STYLE_REDUCTION:g}x; score: geometric mean over "
                    "style weights of total loss / lowest eligible total loss at that style weight; lowest wins"),
      "best_setting": best, "selection": selection, "loss_curves": curves, "runs": runs}, started=started)


if __name__ == "__main__":
  common.app_run(run, __file__, quick=QUICK, full=FULL)
