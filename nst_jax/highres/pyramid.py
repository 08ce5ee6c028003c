"""High-resolution style transfer of a plan: a coarse-to-fine pyramid of tiled optimisations, resumable.

`scale_sizes` lists long sides from `HighresConfig.start_size` up to the plan's size; every scale recomputes the
style and content targets at its size (`scale_problem.build_scale_problem`) and starts from the previous scale's
result upsampled. The resume state is one file, rewritten atomically, keyed by a fingerprint of the request.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import zipfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from nst_jax import optim
from nst_jax.engines.optimize import StylizeResult, optimize_image
from nst_jax.errors import NSTError
from nst_jax.highres.distributed import make_mesh, put
from nst_jax.highres.highres_config import HighresConfig, check_highres_request, iterations_rule, scale_sizes
from nst_jax.highres.memory import auto_tile_size, budget_bytes, estimate_peak_bytes
from nst_jax.highres.scale_problem import ScaleProblem, build_scale_problem, region_count
from nst_jax.io import checkpoint, image_io
from nst_jax.objective.images import finish_colors, initial_image
from nst_jax.objective.plan import ObjectivePlan
from nst_jax.weights.format import VGGWeights


RESUME_FILE = "resume.npz"
RESUME_FORMAT = "nst_jax-highres-resume"
RESUME_FORMAT_VERSION = 1


class Checkpointer:
  """Resume state in a folder: one state file, `resume.npz` (`nst_jax.io.checkpoint`, format
  "nst_jax-highres-resume"), holding the scale and iteration reached, the fingerprint of the request, the image of
  that scale after that many iterations and, mid-scale, the optimizer state. It is replaced atomically, so a kill
  at any moment leaves a consistent state. Folders written before this format (state.json, image_*.npy,
  opt_*.npz) still resume; the first save replaces them."""

  def __init__(self, folder: str | os.PathLike | None, fingerprint: str, *, writer: bool = True):
    self.folder = pathlib.Path(folder) if folder else None
    self.fingerprint = fingerprint
    self.writer = writer  # under jax.distributed only process 0 writes; every process reads

  def load(self) -> tuple[int, int, np.ndarray, dict[str, np.ndarray] | None] | None:
    """(scale, iteration, image, optimizer-state arrays or None), or None for a fresh start."""
    if self.folder is None:
      return None
    path = self.folder / RESUME_FILE
    if path.is_file():
      what = "high-resolution resume state"
      meta, arrays = checkpoint.read(path, what=what, hint="empty HighresConfig.checkpoint_dir or use another folder")
      checkpoint.check_format(meta, path=path, kind=RESUME_FORMAT, versions=(RESUME_FORMAT_VERSION,), what=what)
      if "image" not in arrays or not {"fingerprint", "scale", "iteration"} <= set(meta):
        raise NSTError(f"{path}: incomplete {what}; empty HighresConfig.checkpoint_dir or use another folder")
      state = {**meta, "image": arrays["image"]}
      opt = {k: v for k, v in arrays.items() if k.startswith("opt_state/")} or None
    elif (self.folder / "state.json").is_file():
      state, opt = self._load_previous_format()
      if state["fingerprint"] != self.fingerprint:
        # The fingerprint hashes every field of the config, so a folder of a version whose config had other fields
        # never matches, even for the same command.
        raise NSTError(f"HighresConfig.checkpoint_dir {str(self.folder)!r} holds resume state (state.json) of an "
                       f"earlier nst_jax version or of other inputs or settings; empty the folder or use another to "
                       f"start again")
    else:
      return None
    if state["fingerprint"] != self.fingerprint:
      raise NSTError(f"HighresConfig.checkpoint_dir {str(self.folder)!r} holds a run with other inputs or settings; "
                     f"use another folder or empty it")
    return int(state["scale"]), int(state["iteration"]), state["image"], opt

  def _load_previous_format(self) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
    """state.json naming image_SS_IIIIII.npy and, mid-scale, opt_SS_IIIIII.npz (leaves "leaf0000"... in order)."""
    try:
      state = json.loads((self.folder / "state.json").read_text())
      state["image"] = np.load(self.folder / state["image"], allow_pickle=False)
      opt = None
      if state.get("opt_state"):
        with np.load(self.folder / state["opt_state"], allow_pickle=False) as f:
          opt = {k: f[k] for k in f.files}
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
      raise NSTError(f"HighresConfig.checkpoint_dir {str(self.folder)!r}: unreadable resume state of an earlier "
                     f"nst_jax ({type(e).__name__}: {e}); empty the folder to start again") from None
    return state, opt

  def save(self, scale: int, iteration: int, image: np.ndarray, opt_state: Any | None) -> None:
    if self.folder is None or not self.writer:
      return
    arrays = {"image": np.asarray(image, np.float32)}
    if opt_state is not None:
      arrays.update(checkpoint.flatten_tree(opt_state, "opt_state"))
    checkpoint.write(self.folder / RESUME_FILE, kind=RESUME_FORMAT, version=RESUME_FORMAT_VERSION, arrays=arrays,
                     meta={"fingerprint": self.fingerprint, "scale": scale, "iteration": iteration})
    for previous in [self.folder / "state.json", *self.folder.glob("image_*.npy"), *self.folder.glob("opt_*.npz")]:
      previous.unlink(missing_ok=True)


def fingerprint(*arrays: np.ndarray, settings: Mapping[str, Any]) -> str:
  """A SHA-256 of `settings` (as JSON) and of the arrays' float32 values: what a resume state must match."""
  digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
  for array in arrays:
    digest.update(np.ascontiguousarray(array, np.float32).tobytes())
  return digest.hexdigest()


def optimize_scale(problem: ScaleProblem, x0: np.ndarray, *, run: optim.RunSettings, mesh: Mesh,
                   start: int = 0, opt_leaves: Mapping[str, np.ndarray] | None = None,
                   save: Callable[[int, np.ndarray, Any], None] | None = None, checkpoint_every: int = 0,
                   label: str = "", progress: bool = True) -> StylizeResult:
  """`run.iterations` optimizer steps of one scale's tiled loss, the image and optimizer state replicated on `mesh`.

  Args:
    problem: the scale's tiled problem (`scale_problem.build_scale_problem`).
    x0: the start image, or with `start` > 0 the image saved after `start` iterations.
    run: the optimizer, iteration count and the rest of `optimize.optimize_image`'s settings.
    opt_leaves: the optimizer state saved at `start` (`checkpoint.flatten_tree` leaves); None: a fresh state.
    save: `(iteration, image, opt_state)` every `checkpoint_every` iterations.
    label, progress: as in `optimize.optimize_image`.

  Returns:
    The scale's `StylizeResult`.
  """
  replicated = NamedSharding(mesh, P())
  optimizer = run.make_optimizer()
  x = put(np.asarray(x0, np.float32), replicated)
  opt_state = optim.init_state(optimizer, x)
  if opt_leaves is not None:
    opt_state = checkpoint.restore_tree(opt_state, opt_leaves, "opt_state", where="HighresConfig.checkpoint_dir")
  opt_state = jax.tree.map(lambda a: put(np.asarray(a), replicated), opt_state)
  return optimize_image(problem.terms_fn, problem.inputs, x, run=run, progress=progress, start=start,
                        opt_state=opt_state, on_checkpoint=save, checkpoint_every=checkpoint_every,
                        label=label)


@dataclasses.dataclass
class ScaleReport:
  """What one scale ran: its size, iterations and tiles, the memory model's prediction and the final terms."""

  size: int
  shape: tuple[int, int]
  iterations: int  # run at this scale, resumed ones included (fewer than planned when L-BFGS stalled)
  tile: int
  halo: int
  tiles: int
  predicted_bytes: int
  final_terms: dict[str, float]


def run_pyramid(plan: ObjectivePlan, run: optim.RunSettings, *, hr: HighresConfig, content: np.ndarray | None,
                styles: Sequence[np.ndarray], weights: VGGWeights, mesh: Mesh | None = None,
                synthesis_shape: tuple[int, int] | None = None, progress: bool = True,
                on_scale_done: Callable[[int, np.ndarray], None] | None = None,
                content_seg: np.ndarray | None = None, style_seg: np.ndarray | None = None
                ) -> tuple[StylizeResult, list[ScaleReport]]:
  """The pyramid of tiled optimisations of `plan`; resumes from `hr.checkpoint_dir` when it holds this request's
  state.

  Args:
    plan: the resolved objective; `plan.config.size` is the last scale's long side.
    run: the optimizer and its settings; `run.iterations` are the first scale's iterations unless
      `hr.scale_iterations` gives each scale's.
    hr: the pyramid, tiles, memory budget and checkpoints.
    content, styles: (H, W, 3) images in [0, 1]; `content` None: texture synthesis at `synthesis_shape`
      (default: the first style's aspect).
    mesh: the devices the tiles are sharded over (default: every device, `distributed.make_mesh`).
    on_scale_done: `(scale index, image)` after each scale's checkpoint is written (a test hook).
    content_seg, style_seg: segmentation maps as in `scale_problem.build_scale_problem`.

  Returns:
    The result (loss history of every scale run) and one `ScaleReport` per scale run.
  """
  check_highres_request(hr, plan)
  styles = list(styles)
  mesh = mesh or make_mesh()
  sizes = scale_sizes(plan.config.size, hr.start_size, hr.scale_step)
  iterations = list(hr.scale_iterations) or iterations_rule(run.iterations, sizes)
  base_shape = content.shape if content is not None else (synthesis_shape or styles[0].shape)
  # The request's fingerprint hashes the config, which holds the run settings it was resolved with.
  settings = {"config": dataclasses.asdict(plan.config), "sizes": sizes, "iterations": iterations,
              "hr": {k: v for k, v in dataclasses.asdict(hr).items() if k not in ("checkpoint_dir",)},
              "devices": int(mesh.devices.size), "weights": weights.source_sha256}
  inputs_for_hash = ([content] if content is not None else []) + styles + [
      a for a in (content_seg, style_seg) if a is not None]
  ckpt = Checkpointer(hr.checkpoint_dir, fingerprint(*inputs_for_hash, settings=settings),
                      writer=jax.process_index() == 0)
  resume = ckpt.load()
  content_layers = plan.content_layers
  layers = tuple(dict.fromkeys(content_layers + plan.style_layers))
  regions = region_count(content_seg, style_seg)
  matting_on = any(term.name == "matting" for term in plan.image_terms)
  budget = budget_bytes(hr.max_memory_gb)
  reports: list[ScaleReport] = []
  history: list[np.ndarray] = []
  initial_terms: dict[str, float] | None = None
  image: np.ndarray | None = None
  problem = None
  for k, (size, iters) in enumerate(zip(sizes, iterations)):
    shape = image_io.long_side_shape(base_shape, size)
    if resume is not None and (resume[0] > k or (resume[0] == k and resume[1] >= iters)):
      if resume[0] == k:
        image = resume[2]
      continue
    tile = hr.tile_size or auto_tile_size(shape, budget_bytes=budget, arch=weights.arch, layers=layers,
                                          content_layers=content_layers, halo=hr.tile_halo, overlap=hr.tile_overlap,
                                          precision=hr.precision, batch=hr.tile_batch,
                                          devices=int(mesh.devices.size), regions=regions, matting=matting_on)
    problem = build_scale_problem(content=content, styles=styles, weights=weights, plan=plan.at_size(size),
                                  shape=shape, tile=tile, hr=hr, mesh=mesh, content_seg=content_seg,
                                  style_seg=style_seg)
    start, opt_leaves = 0, None
    if resume is not None and resume[0] == k:
      start, x0, opt_leaves = resume[1], resume[2], resume[3]
    elif image is not None:
      x0 = image_io.resize(image, *shape)
    else:
      x0 = initial_image(plan.start_kind, content=problem.content, styles=styles, seed=plan.config.seed,
                         shape=shape, style_weights=plan.blend, noise=plan.start_noise,
                         start_colors=plan.config.start_colors)
    result = optimize_scale(problem, x0, run=dataclasses.replace(run, iterations=iters), mesh=mesh, start=start,
                            opt_leaves=opt_leaves, save=lambda i, x, s, k=k: ckpt.save(k, i, x, s),
                            checkpoint_every=hr.checkpoint_every,
                            label=f"scale {k + 1}/{len(sizes)} {shape[1]}x{shape[0]} ", progress=progress)
    image = result.image
    ckpt.save(k, iters, image, None)
    if on_scale_done:
      on_scale_done(k, image)
    initial_terms = initial_terms or result.initial_terms
    history.append(result.loss_history)
    grid = problem.grid
    reports.append(ScaleReport(size=size, shape=shape, iterations=start + len(result.loss_history), tile=grid.tile,
                               halo=grid.halo, tiles=grid.num_tiles, predicted_bytes=estimate_peak_bytes(
                                   grid, arch=weights.arch, layers=layers, content_layers=content_layers,
                                   precision=hr.precision, regions=regions, matting=matting_on),
                               final_terms=result.final_terms))
  final = reports[-1].final_terms if reports else {}
  image = finish_colors(image, content=None if content is None else image_io.resize(content, *image.shape[:2]),
                        styles=styles, plan=plan)
  return StylizeResult(image=image, loss_history=np.concatenate(history) if history else np.zeros((0,)),
                       initial_terms=initial_terms or {}, final_terms=final), reports

