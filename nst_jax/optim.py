"""Optimizers by name and a jitted optimisation loop that runs many steps per host round-trip.

`make_chunk_runner` compiles one function that performs up to `chunk_size` optimizer steps inside
`lax.fori_loop` (the trip count is a traced argument, so every chunk length reuses the same compilation) and
returns the loss of each step. The host only sees the image between chunks: for progress, intermediate saves and
NaN checks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from nst_jax.errors import NSTError

LossFn = Callable[[jax.Array, Any], jax.Array]  # (image, loss inputs) -> scalar

# Learning rates for an image in [0, 1] when none is given (L-BFGS uses its line search instead).
DEFAULT_LEARNING_RATES = {"adam": 0.02, "adamw": 0.02, "sgd": 0.05, "rmsprop": 0.005, "lbfgs": None}


def make_optimizer(name: str, *, learning_rate: float | None = None,
                   lbfgs_memory: int = 10) -> optax.GradientTransformationExtraArgs:
  """'lbfgs' (zoom line search; `learning_rate` then fixes the step instead) or any optax optimizer name."""
  if name == "lbfgs":
    return optax.lbfgs(learning_rate=learning_rate, memory_size=lbfgs_memory,
                       linesearch=None if learning_rate is not None else
                       optax.scale_by_zoom_linesearch(max_linesearch_steps=20))
  factory = getattr(optax, name, None)
  if not callable(factory) or name.startswith("_"):
    raise NSTError(f"unknown optimizer {name!r}; use 'lbfgs' or an optax optimizer such as adam, sgd, adamw")
  if learning_rate is None:
    learning_rate = DEFAULT_LEARNING_RATES.get(name, 0.01)
  try:
    return optax.with_extra_args_support(factory(learning_rate))
  except TypeError as e:
    raise NSTError(f"optimizer {name!r} cannot be built from a learning rate alone: {e}") from None


def has_linesearch_state(opt_state) -> bool:
  """L-BFGS with a line search keeps the last value and gradient in its state, which saves one evaluation."""
  return optax.tree_utils.tree_get(opt_state, "value") is not None


def make_chunk_runner(loss_fn: LossFn, optimizer: optax.GradientTransformationExtraArgs, *,
                      chunk_size: int, reuse_linesearch_value: bool):
  """Returns jitted `run(x, opt_state, inputs, num_steps) -> (x, opt_state, losses)`; losses has chunk_size
  entries, those past num_steps are NaN. `reuse_linesearch_value` = `has_linesearch_state(opt_state)`."""

  def step(x, opt_state, inputs):
    value_fn = functools.partial(_call_loss, loss_fn, inputs=inputs)
    if reuse_linesearch_value:
      value, grad = optax.value_and_grad_from_state(value_fn)(x, state=opt_state)
    else:
      value, grad = jax.value_and_grad(value_fn)(x)
    updates, opt_state = optimizer.update(grad, opt_state, x, value=value, grad=grad, value_fn=value_fn)
    return optax.apply_updates(x, updates), opt_state, value

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def run(x, opt_state, inputs, num_steps):
    def body(i, carry):
      x, opt_state, losses = carry
      x, opt_state, value = step(x, opt_state, inputs)
      return x, opt_state, losses.at[i].set(value)

    losses = jnp.full((chunk_size,), jnp.nan, jnp.float32)
    return jax.lax.fori_loop(0, num_steps, body, (x, opt_state, losses))

  return run


def _call_loss(loss_fn: LossFn, x: jax.Array, *, inputs) -> jax.Array:
  return loss_fn(x, inputs)

