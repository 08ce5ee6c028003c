"""Optimizers by name and a jitted optimisation loop that runs many steps per host round-trip.

`make_chunk_runner` compiles one function that performs up to `chunk_size` optimizer steps inside
`lax.fori_loop` (the trip count is a traced argument, so every chunk length reuses the same compilation) and
returns the loss of each step. The host only sees the image between chunks: for progress, intermediate saves and
NaN checks.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from nst_jax import lbfgs
from nst_jax.errors import NSTError

LossFn = Callable[[jax.Array, Any], jax.Array]  # (image, loss inputs) -> scalar

# Learning rates for an image in [0, 1] when none is given (L-BFGS uses its line search instead).
DEFAULT_LEARNING_RATES = {"adam": 0.02, "adamw": 0.02, "sgd": 0.05, "rmsprop": 0.005, "lbfgs": None,
                          "lbfgs_zoom": None}
LBFGS_NAMES = ("lbfgs", "lbfgs_zoom")
SCHEDULES = ("constant", "cosine", "exponential", "linear", "warmup_cosine")


def make_schedule(name: str, learning_rate: float, iterations: int) -> optax.Schedule | float:
  """The learning-rate schedule `name` over `iterations` steps; decays end at 1% of the peak (exponential: 10%).

  constant, cosine, exponential, linear or warmup_cosine (a tenth of the steps warming up); NSTError otherwise."""
  steps = max(iterations, 1)
  if name == "constant":
    return learning_rate
  if name == "cosine":
    return optax.cosine_decay_schedule(learning_rate, steps, alpha=0.01)
  if name == "exponential":
    return optax.exponential_decay(learning_rate, transition_steps=steps, decay_rate=0.1)
  if name == "linear":
    return optax.linear_schedule(learning_rate, 0.01 * learning_rate, steps)
  if name == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(0.0, learning_rate, max(1, steps // 10), steps, 0.01 * learning_rate)
  raise NSTError(f"unknown learning-rate schedule {name!r}; use one of {', '.join(SCHEDULES)}")


def normalize_by_mean_abs(eps: float = 1e-12) -> optax.GradientTransformation:
  """A transformation that divides the gradient by its mean absolute value (neural-style's -normalize_gradients).

  The step size then no longer depends on the loss weights' scale."""

  def update(updates, state, params=None):
    del params
    scale = jnp.mean(jnp.stack([jnp.mean(jnp.abs(u)) for u in jax.tree.leaves(updates)]))
    return jax.tree.map(lambda u: u / (scale + eps), updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(name: str, *, learning_rate: float | None = None, schedule: str = "constant",
                   iterations: int = 1, options: dict[str, Any] | None = None, normalize_gradients: bool = False,
                   lbfgs_memory: int = 10) -> optax.GradientTransformationExtraArgs:
  """An optimiser by name: 'lbfgs', 'lbfgs_zoom' or any optax optimiser.

  'lbfgs' is `nst_jax.lbfgs.lbfgs`: one evaluation of the loss per step (a backtracking line search run across
  steps), so its jitted loop compiles the loss and gradient once. 'lbfgs_zoom' is optax's L-BFGS with the zoom line
  search (strong Wolfe conditions; three traced copies of the loss per step). Either with a `learning_rate` is
  optax's L-BFGS with that fixed step and no line search.

  Args:
    name: 'lbfgs', 'lbfgs_zoom' or the name of an optax optimiser ('adam', 'sgd', 'adamw', ...).
    learning_rate: the step size; for L-BFGS a fixed step instead of the line search.
    schedule: the learning-rate schedule (`make_schedule`) over `iterations` steps.
    iterations: the run's length, for the schedule.
    options: keyword arguments of the optax constructor (e.g. {'momentum': 0.9, 'nesterov': True} for sgd,
      {'b1': 0.8, 'weight_decay': 1e-4} for adamw); a bad name or value is an NSTError.
    normalize_gradients: divide the gradient by its mean absolute value first (`normalize_by_mean_abs`).
    lbfgs_memory: the number of L-BFGS correction pairs kept.
  """
  options = dict(options or {})
  if name in LBFGS_NAMES:
    if normalize_gradients:
      raise NSTError("RunSettings.normalize_gradients is for first-order optimizers; L-BFGS is invariant to "
                     "the scale")
    if schedule != "constant":
      raise NSTError("RunSettings.lr_schedule needs a first-order optimizer; L-BFGS chooses its steps by line "
                     "search")
    memory = int(options.pop("memory_size", lbfgs_memory))
    accepted = ["memory_size"]
    if name == "lbfgs_zoom":
      linesearch_steps = int(options.pop("max_linesearch_steps", 20))
      accepted.append("max_linesearch_steps")
    if options:
      raise NSTError(f"{name} does not take option(s) {', '.join(options)}; it takes {', '.join(accepted)}")
    if learning_rate is not None:
      return optax.lbfgs(learning_rate=learning_rate, memory_size=memory, linesearch=None)
    if name == "lbfgs":
      return lbfgs.lbfgs(memory_size=memory)
    return optax.lbfgs(memory_size=memory,
                       linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=linesearch_steps))
  factory = getattr(optax, name, None)
  if not callable(factory) or name.startswith("_") or not name.islower():
    raise NSTError(f"unknown optimizer {name!r}; use 'lbfgs' or an optax optimizer such as adam, sgd, adamw")
  if learning_rate is None:
    learning_rate = DEFAULT_LEARNING_RATES.get(name, 0.01)
  try:
    base = factory(make_schedule(schedule, learning_rate, iterations), **options)
  except TypeError as e:
    raise NSTError(f"optimizer {name!r} rejected its options {options}: {e}") from None
  if not isinstance(base, optax.GradientTransformation):
    raise NSTError(f"optax.{name} is not an optimizer")
  if normalize_gradients:
    base = optax.chain(normalize_by_mean_abs(), base)
  return optax.with_extra_args_support(base)


@functools.lru_cache(maxsize=16)
def cached_optimizer(name: str, *, learning_rate: float | None, schedule: str, iterations: int,
                     options: tuple[tuple[str, Any], ...], normalize_gradients: bool) -> \
    optax.GradientTransformationExtraArgs:
  """`make_optimizer` remembered for equal settings (`options` as sorted (key, value) pairs).

  Runs with the same optimiser share one object and with it the compiled loop of `make_chunk_runner`."""
  return make_optimizer(name, learning_rate=learning_rate, schedule=schedule, iterations=iterations,
                        options=dict(options), normalize_gradients=normalize_gradients)


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """How an image is optimised, apart from what is optimised: the optimizer, the number of steps and the host's
  work between chunks of steps (`nst_jax.engines.optimize.optimize_image`). The optimizer fields are
  `make_optimizer`'s arguments."""

  iterations: int
  optimizer: str = "lbfgs"
  learning_rate: float | None = None
  optimizer_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  lr_schedule: str = "constant"
  normalize_gradients: bool = False
  log_every: int = 10               # steps per host round-trip (progress, the NaN check)
  save_every: int = 0               # an intermediate image every N steps; 0: none
  stall_rtol: float | None = 1e-6   # L-BFGS stops once its loss stalls (`nst_jax.engines.optimize.stalled`)

  def make_optimizer(self) -> optax.GradientTransformationExtraArgs:
    """The optimizer. Equal settings give the same object (`cached_optimizer`), and with it the same compiled
    loop, whatever the iteration count when no learning-rate schedule depends on it."""
    iterations = self.iterations if self.lr_schedule != "constant" else 1
    try:
      options = tuple(sorted(self.optimizer_options.items()))
      hash(options)
    except TypeError:  # unhashable option values (from the Python API): built afresh
      return make_optimizer(self.optimizer, learning_rate=self.learning_rate, schedule=self.lr_schedule,
                            iterations=iterations, options=dict(self.optimizer_options),
                            normalize_gradients=self.normalize_gradients)
    return cached_optimizer(self.optimizer, learning_rate=self.learning_rate, schedule=self.lr_schedule,
                            iterations=iterations, options=options, normalize_gradients=self.normalize_gradients)


def parse_options(text: str, *, flag: str = "--optimizer_args") -> dict[str, Any]:
  """The key=value options of a flag such as --optimizer_args, as a dict.

  'momentum=0.9,nesterov=true' gives {'momentum': 0.9, 'nesterov': True}: values are numbers (int when written as
  one) or true/false; anything else is an NSTError naming `flag`."""
  options: dict[str, Any] = {}
  for item in filter(None, (part.strip() for part in text.split(","))):
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
      raise NSTError(f"{flag}: expected key=value, got {item!r}")
    value = value.strip()
    if value.lower() in ("true", "false"):
      options[key.strip()] = value.lower() == "true"
      continue
    try:
      number = float(value)
    except ValueError:
      raise NSTError(f"{flag}: {key.strip()}={value!r} is not a number or true/false") from None
    options[key.strip()] = int(number) if number.is_integer() and "." not in value and "e" not in value.lower() \
        else number
  return options


def init_state(optimizer: optax.GradientTransformation, params) -> Any:
  """`optimizer.init(params)` with every leaf a fresh buffer of a fixed (not weak) type.

  optax may alias one buffer in several leaves, which buffer donation refuses; and the line search's state starts
  with weakly typed scalars that the first jitted step returns strongly typed, so without the cast the step would be
  traced and compiled a second time for the second call."""
  return jax.tree.map(lambda leaf: jnp.array(leaf, dtype=jnp.asarray(leaf).dtype, copy=True),
                      optimizer.init(params))


def has_linesearch_state(opt_state) -> bool:
  """Whether `opt_state` keeps the zoom line search's last value and gradient ('lbfgs_zoom'), which saves one
  evaluation."""
  return optax.tree_utils.tree_get(opt_state, "value") is not None


def has_line_search(opt_state) -> bool:
  """Whether `opt_state` is an L-BFGS with a line search ('lbfgs' or 'lbfgs_zoom'), whose loss never rises."""
  return has_linesearch_state(opt_state) or lbfgs.accepted_value(opt_state) is not None


def best_params(params, opt_state):
  """The point to report after a chunk: for 'lbfgs' its last accepted point (`params` may be a pending trial),
  else `params`."""
  accepted = lbfgs.accepted_params(opt_state)
  return params if accepted is None else accepted


@functools.lru_cache(maxsize=16)
def make_chunk_runner(loss_fn: LossFn, optimizer: optax.GradientTransformationExtraArgs, *,
                      chunk_size: int, reuse_linesearch_value: bool, with_terms: bool = False):
  """A jitted `run(x, opt_state, inputs, num_steps) -> (x, opt_state, losses)` of up to `chunk_size` steps.

  `losses` has `chunk_size` entries, those past `num_steps` NaN; for 'lbfgs' each is the loss at the last accepted
  point after that step (so it never rises), and `best_params(x, opt_state)` is the point to keep.
  `reuse_linesearch_value` = `has_linesearch_state(opt_state)` ('lbfgs_zoom'): an accepted step then costs one
  evaluation. Remembered for equal arguments (the last 16), so that a hashable `loss_fn` that compares equal across
  runs (`nst_jax.objective.terms.LossTerms`) and the same optimiser object (`cached_optimizer`) reuse the traced and
  compiled loop instead of tracing it again.

  With `with_terms` (not with `reuse_linesearch_value`), `loss_fn` has a `terms_fn(x, inputs) -> {name: term}`
  whose sum it is, and `run` also returns `(first, latest)`: the terms at the chunk's first evaluation (its `x`)
  and at the last evaluated point, for 'lbfgs' the last accepted one (`best_params`), taken from the evaluations
  the steps make anyway, so that no second program evaluates them."""
  if with_terms and reuse_linesearch_value:
    raise ValueError("with_terms needs a runner that evaluates the loss itself (not reuse_linesearch_value)")

  def step(x, opt_state, inputs):
    value_fn = functools.partial(_call_loss, loss_fn, inputs=inputs)
    terms = None
    if reuse_linesearch_value:
      value, grad = optax.value_and_grad_from_state(value_fn)(x, state=opt_state)
    elif with_terms:
      (value, terms), grad = jax.value_and_grad(_summed_with_terms, has_aux=True)(x, loss_fn.terms_fn, inputs)
    else:
      value, grad = jax.value_and_grad(value_fn)(x)
    updates, opt_state = optimizer.update(grad, opt_state, x, value=value, grad=grad, value_fn=value_fn)
    accepted = lbfgs.accepted_value(opt_state)
    return optax.apply_updates(x, updates), opt_state, value if accepted is None else accepted, terms

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def run(x, opt_state, inputs, num_steps):
    def body(i, carry):
      x, opt_state, losses, first, latest = carry
      x, opt_state, value, terms = step(x, opt_state, inputs)
      if with_terms:
        first = jax.tree.map(lambda a, b: jnp.where(i == 0, a, b), terms, first)
        accepted = lbfgs.accepted_last(opt_state)
        latest = jax.tree.map(lambda a, b: jnp.where(True if accepted is None else accepted, a, b), terms, latest)
      return x, opt_state, losses.at[i].set(value), first, latest

    losses = jnp.full((chunk_size,), jnp.nan, jnp.float32)
    empty = None
    if with_terms:
      empty = jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), jax.eval_shape(loss_fn.terms_fn, x, inputs))
    x, opt_state, losses, first, latest = jax.lax.fori_loop(0, num_steps, body, (x, opt_state, losses, empty, empty))
    return (x, opt_state, losses, (first, latest)) if with_terms else (x, opt_state, losses)

  return run


def _summed_with_terms(x, terms_fn, inputs):
  terms = terms_fn(x, inputs)
  return sum(terms.values()), terms


def _call_loss(loss_fn: LossFn, x: jax.Array, *, inputs) -> jax.Array:
  return loss_fn(x, inputs)
