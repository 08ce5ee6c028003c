"""Optimising an image: the chunked loop shared by the whole-image and tiled problems.

One jitted runner (`optim.make_chunk_runner`) does `log_every` optimizer steps per call; between calls the host
checks for NaN, reports progress (an in-place tqdm bar with the loss terms and an ETA), saves intermediates and
checkpoints, and stops L-BFGS once the loss has stalled. The loop takes the loss terms, their inputs and the run
settings (`optim.RunSettings`), not the settings of the method that made them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from nst_jax import optim
from nst_jax.errors import NSTError

STALL_WINDOW = 10


@dataclasses.dataclass
class StylizeResult:
  """The optimised image and the loss along the way."""

  image: np.ndarray                  # (H, W, 3) float32 in [0, 1]
  loss_history: np.ndarray           # total loss evaluated at each iteration
  initial_terms: dict[str, float]    # weighted loss terms of the initial image
  final_terms: dict[str, float]      # the same for the result


class NonFiniteLossError(NSTError):
  """The optimisation diverged; carries the last finite image so that no work is lost."""

  def __init__(self, message: str, *, last_good_image: np.ndarray, iteration: int):
    super().__init__(message)
    self.last_good_image = last_good_image
    self.iteration = iteration


def stalled(losses: np.ndarray, *, rtol: float | None, window: int = STALL_WINDOW) -> bool:
  """Whether the last `window` iterations of `losses` lowered the loss by at most `rtol` of its value.

  A line-search L-BFGS never raises the loss; once it stops lowering it, the iterate has reached float32 precision
  (a line search that finds no lower value returns a zero step, and the next iteration repeats it), so the rest would
  change nothing -- torch's L-BFGS stops there by tolerance_change. An Adam loss can rise and fall, so the test is
  only for L-BFGS."""
  if rtol is None or len(losses) <= window:
    return False
  before, now = float(losses[-window - 1]), float(losses[-1])
  return before - now <= rtol * abs(before)


def chunk_size(run: optim.RunSettings, checkpoint_every: int = 0) -> int:
  """Steps per host round-trip: the logging interval, shortened so that intermediate saves and checkpoints land on
  time."""
  chunk = max(1, run.log_every)
  for every in (run.save_every, checkpoint_every):
    if every:
      chunk = math.gcd(chunk, every)
  return chunk  # not shortened to the iteration count: runs of different lengths share the compiled loop


def _progress_bar(run: optim.RunSettings, *, done: int, label: str) -> tqdm:
  # Created after the first chunk, whose time is mostly compilation, so that the rate and ETA count only steps.
  # Updated once per chunk (every log_every steps), so every update is drawn (mininterval 0).
  return tqdm(total=run.iterations, initial=done, desc=label.strip(), unit="it", file=sys.stderr,
              dynamic_ncols=True, leave=True, smoothing=0.1, mininterval=0)


@dataclasses.dataclass(frozen=True)
class SummedTerms:
  """The total loss `sum(terms_fn(x, inputs).values())`; equal for equal `terms_fn`, so that equal loss terms
  share the compiled optimisation loop (`optim.make_chunk_runner`)."""

  terms_fn: Callable[[jax.Array, Any], dict[str, jax.Array]]

  def __call__(self, x: jax.Array, inputs: Any) -> jax.Array:
    return sum(self.terms_fn(x, inputs).values())


@functools.lru_cache(maxsize=16)
def jitted_terms(terms_fn: Callable[[jax.Array, Any], dict[str, jax.Array]]):
  """`jax.jit(terms_fn)`, one per (equal) terms function."""
  return jax.jit(terms_fn)


def optimize_image(terms_fn: Callable[[jax.Array, Any], dict[str, jax.Array]], inputs: Any, x0, *,
                   run: optim.RunSettings, on_intermediate: Callable[[int, np.ndarray], None] | None = None,
                   progress: bool = True, start: int = 0, opt_state: Any = None,
                   on_checkpoint: Callable[[int, np.ndarray, Any], None] | None = None, checkpoint_every: int = 0,
                   label: str | None = None) -> StylizeResult:
  """Minimises `sum(terms_fn(x, inputs).values())` over the image x from x0, up to `run.iterations` steps.

  Args:
    terms_fn: `(image, inputs) -> {name: weighted loss term}`; equal functions share the compiled loop.
    inputs: the terms' array inputs (targets, parameters, weights), arguments of the jitted step.
    x0: the start, (H, W, 3); with `opt_state`, a device array of any sharding, which the jitted steps keep.
    run: the optimizer, iteration count, logging and saving intervals and the L-BFGS stall test.
    on_intermediate: `(iteration, image)` every `run.save_every` iterations before the last.
    start, opt_state: resuming (`nst_jax.highres`): `start` iterations are done and `opt_state` is the optimizer
      state saved then.
    on_checkpoint: `(iteration, image, opt_state)` every `checkpoint_every` iterations before the last.
    progress: a "compiling" line, then an in-place progress bar on stderr, each line starting with `label`.

  Returns:
    The `StylizeResult`. L-BFGS with a line search stops early once the loss has stalled (`stalled`), so
    `loss_history` may be shorter than `run.iterations - start`.

  Raises:
    NonFiniteLossError: the loss became NaN or infinite; it carries the last finite image.
  """
  label = label or f"{run.optimizer} "
  optimizer = run.make_optimizer()
  x = jnp.asarray(x0, jnp.float32)
  if opt_state is None:
    opt_state = optim.init_state(optimizer, x)
  chunk = chunk_size(run, checkpoint_every)
  line_search = optim.has_line_search(opt_state)
  zoom = optim.has_linesearch_state(opt_state)
  # The steps' own evaluations give the loss terms for the report (all but 'lbfgs_zoom', whose line search keeps
  # only the value): no second program for them; 'lbfgs' reports those of its accepted point.
  runner = optim.make_chunk_runner(SummedTerms(terms_fn), optimizer, chunk_size=chunk,
                                   reuse_linesearch_value=zoom, with_terms=not zoom)
  eval_terms = jitted_terms(terms_fn)
  compile_start = time.perf_counter()
  if progress and start < run.iterations:
    print(f"{label}compiling the loss and its gradient (once per run; tens of seconds on a CPU) ...",
          file=sys.stderr, flush=True)
  initial_terms = {k: float(v) for k, v in eval_terms(x, inputs).items()} if zoom or start >= run.iterations \
      else None
  latest_terms = None
  bar = None
  history: list[np.ndarray] = []
  last_good = np.asarray(x)
  done = start
  try:
    while done < run.iterations:
      steps = min(chunk, run.iterations - done)
      if zoom:
        x, opt_state, chunk_losses = runner(x, opt_state, inputs, steps)
      else:
        x, opt_state, chunk_losses, (first_terms, latest_terms) = runner(x, opt_state, inputs, steps)
        if initial_terms is None:
          initial_terms = {k: float(v) for k, v in first_terms.items()}
      chunk_losses = np.asarray(chunk_losses[:steps])
      if not np.all(np.isfinite(chunk_losses)):
        bad = done + int(np.argmin(np.isfinite(chunk_losses))) + 1
        raise NonFiniteLossError(f"the loss became NaN/inf at iteration {bad}; lower the learning rate or "
                                 f"the loss weights", last_good_image=np.clip(last_good, 0, 1), iteration=done)
      history.append(chunk_losses)
      done += steps
      best = optim.best_params(x, opt_state)
      last_good = np.asarray(best)
      if progress:
        shown = eval_terms(best, inputs) if zoom else latest_terms
        terms = {k: f"{float(v):.4g}" for k, v in shown.items()}
        if bar is None:
          print(f"{label}compiled and ran {steps} iteration(s) in {time.perf_counter() - compile_start:.1f} s",
                file=sys.stderr, flush=True)
          bar = _progress_bar(run, done=done, label=label)
          bar.set_postfix(terms)
        else:
          bar.set_postfix(terms, refresh=False)
          bar.update(steps)
      if on_intermediate and run.save_every and done % run.save_every == 0 and done < run.iterations:
        on_intermediate(done, np.clip(last_good, 0.0, 1.0))
      if on_checkpoint and checkpoint_every and done % checkpoint_every == 0 and done < run.iterations:
        on_checkpoint(done, np.asarray(x), opt_state)  # the pending trial point, which the state resumes from
      if line_search and done < run.iterations and stalled(np.concatenate(history[-STALL_WINDOW - 1:]),
                                                           rtol=run.stall_rtol):
        if bar is not None:
          bar.close()
          bar = None
        if progress:
          print(f"{label}stopped at iteration {done}: the loss fell by under {run.stall_rtol:g} (relative) "
                f"in {STALL_WINDOW} iterations", file=sys.stderr, flush=True)
        break
  finally:
    if bar is not None:
      bar.close()
  if latest_terms is not None and line_search:  # 'lbfgs': the terms of its accepted point, `best_params`
    final_terms = {k: float(v) for k, v in latest_terms.items()}
  else:  # the last update moved past the last evaluated point
    final_terms = {k: float(v) for k, v in eval_terms(optim.best_params(x, opt_state), inputs).items()}
  return StylizeResult(image=np.clip(last_good, 0.0, 1.0),
                       loss_history=np.concatenate(history) if history else np.zeros((0,), np.float32),
                       initial_terms=initial_terms, final_terms=final_terms)
