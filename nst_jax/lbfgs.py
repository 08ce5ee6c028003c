"""L-BFGS that evaluates the objective once per step: a backtracking line search run as a state machine.

optax's L-BFGS with the zoom line search traces the objective three times into every step (the step's evaluation,
the search's first trial and its zoom loop), so a jitted loop of it compiles three copies of the loss and its
gradient. Here each step evaluates one trial point, which the caller supplies as the params: the transform
accepts it when it meets the Armijo condition and then moves to the next direction, or else shortens the step and
proposes a point nearer the last accepted one. A step is one evaluation of the loss and its gradient, so a loop of
N steps costs N evaluations; most trials are accepted at the full step (the L-BFGS scaling makes step 1 about right).

Math. At the accepted point x with value f, gradient g and direction d (slope s = gᵀd < 0) the trial
x + t·d is accepted when f(x + t·d) ≤ f + c₁·t·s (c₁ = 1e-4) and the value is finite; the next direction is
d = −H·g, H the two-loop product of the last `memory_size` pairs (xₖ₊₁ − xₖ, gₖ₊₁ − gₖ) whose curvature yᵀs is
positive, scaled by sᵀy/yᵀy of the newest pair (Nocedal & Wright 2006, Alg. 7.4). The first direction is −g scaled
to length at most 1, as optax does. A rejected trial shortens t to the minimiser of the quadratic through f, s and
the trial's value, kept within [0.1 t, 0.5 t] (0.1 t for a non-finite value).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

ARMIJO_C1 = 1e-4
MIN_CURVATURE = 1e-10  # pairs with yᵀs at or below this are not kept (the classic torch/Lua rule)


class LbfgsState(NamedTuple):
  """The search's state. `accepted_*` describe the last accepted point; the params passed to `update` are the
  trial point `accepted_params + step · direction` (the accepted point itself before the first update)."""

  accepted_params: Any
  accepted_value: jax.Array     # f at the accepted point (+inf before the first update)
  accepted_grad: jax.Array      # its gradient, flat
  direction: jax.Array          # flat descent direction from the accepted point
  step: jax.Array               # t of the pending trial
  slope: jax.Array              # gᵀd at the accepted point
  s_memory: jax.Array           # (m, n) accepted steps, oldest overwritten first
  y_memory: jax.Array           # (m, n) their gradient changes
  rho_memory: jax.Array         # (m,) 1 / yᵀs, 0 for empty slots
  pairs: jax.Array              # pairs stored so far (int32)
  evaluations: jax.Array        # trials evaluated (int32)
  accepted_last: jax.Array      # whether the last update accepted its trial point (bool)


def _two_loop(grad: jax.Array, s_mem: jax.Array, y_mem: jax.Array, rho_mem: jax.Array,
              pairs: jax.Array) -> jax.Array:
  """H·grad for the L-BFGS inverse-Hessian estimate of the stored pairs (slot `pairs − 1` the newest)."""
  m = s_mem.shape[0]
  count = jnp.minimum(pairs, m)

  def newest_first(i, carry):
    q, alphas = carry
    slot = (pairs - 1 - i) % m
    alpha = jnp.where(i < count, rho_mem[slot] * jnp.vdot(s_mem[slot], q), 0.0)
    return q - alpha * y_mem[slot], alphas.at[slot].set(alpha)

  q, alphas = jax.lax.fori_loop(0, m, newest_first, (grad, jnp.zeros((m,), grad.dtype)))
  newest = (pairs - 1) % m
  yy = jnp.vdot(y_mem[newest], y_mem[newest])
  gamma = jnp.where((pairs > 0) & (yy > 0), 1.0 / (rho_mem[newest] * jnp.where(yy > 0, yy, 1.0)), 1.0)
  r = gamma * q

  def oldest_first(i, r):
    slot = (pairs - count + i) % m
    beta = jnp.where(i < count, rho_mem[slot] * jnp.vdot(y_mem[slot], r), 0.0)
    return r + jnp.where(i < count, alphas[slot] - beta, 0.0) * s_mem[slot]

  return jax.lax.fori_loop(0, m, oldest_first, r)


def lbfgs(memory_size: int = 10) -> optax.GradientTransformationExtraArgs:
  """L-BFGS with a one-evaluation-per-step backtracking line search (see the module docstring).

  `update(grads, state, params, *, value)` takes the value and gradient at `params`, the pending trial point, and
  returns the updates that move `params` to the next trial point. The loss at the last accepted point, which never
  rises, is `state.accepted_value`; `accepted_params(state)` is that point.

  Args:
    memory_size: the number of correction pairs kept.

  Example:
    >>> opt = lbfgs()
    >>> x = jnp.zeros(3)
    >>> state = opt.init(x)
    >>> for _ in range(20):
    ...   value, grad = jax.value_and_grad(lambda x: jnp.sum((x - 1.0) ** 2))(x)
    ...   updates, state = opt.update(grad, state, x, value=value)
    ...   x = optax.apply_updates(x, updates)
  """

  def init(params):
    flat, _ = ravel_pytree(params)
    n = flat.shape[0]
    zeros = jnp.zeros_like(flat)
    return LbfgsState(
        accepted_params=jax.tree.map(jnp.array, params), accepted_value=jnp.asarray(jnp.inf, flat.dtype),
        accepted_grad=zeros, direction=zeros, step=jnp.asarray(0.0, flat.dtype),
        slope=jnp.asarray(0.0, flat.dtype), s_memory=jnp.zeros((memory_size, n), flat.dtype),
        y_memory=jnp.zeros((memory_size, n), flat.dtype), rho_memory=jnp.zeros((memory_size,), flat.dtype),
        pairs=jnp.asarray(0, jnp.int32), evaluations=jnp.asarray(0, jnp.int32),
        accepted_last=jnp.asarray(False))

  def update(grads, state: LbfgsState, params=None, *, value=None, **extra_args):
    del extra_args
    if params is None or value is None:
      raise ValueError("lbfgs needs the params (the trial point) and the loss value at them")
    x, unravel = ravel_pytree(params)
    g, _ = ravel_pytree(grads)
    x0, _ = ravel_pytree(state.accepted_params)
    value = jnp.asarray(value, x.dtype)
    first = state.evaluations == 0
    finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(g))
    armijo = value <= state.accepted_value + ARMIJO_C1 * state.step * state.slope
    accept = first | (finite & armijo)

    # Accepted: store the pair (when its curvature is positive) and take the next direction.
    s, y = x - x0, g - state.accepted_grad
    ys = jnp.vdot(y, s)
    keep = accept & ~first & (ys > MIN_CURVATURE)
    slot = state.pairs % memory_size
    s_mem = state.s_memory.at[slot].set(jnp.where(keep, s, state.s_memory[slot]))
    y_mem = state.y_memory.at[slot].set(jnp.where(keep, y, state.y_memory[slot]))
    rho_mem = state.rho_memory.at[slot].set(jnp.where(keep, 1.0 / jnp.where(keep, ys, 1.0), state.rho_memory[slot]))
    pairs = state.pairs + keep.astype(jnp.int32)
    steepest = -g * jnp.minimum(1.0, 1.0 / jnp.maximum(jnp.linalg.norm(g), 1e-30))
    direction = -_two_loop(g, s_mem, y_mem, rho_mem, pairs)
    slope = jnp.vdot(g, direction)
    use_steepest = (pairs == 0) | ~(slope < 0)  # no memory yet, or a direction that does not descend
    direction = jnp.where(use_steepest, steepest, direction)
    slope = jnp.where(use_steepest, jnp.vdot(g, steepest), slope)

    # Rejected: the minimiser of the quadratic through f, the slope and the trial's value, safeguarded.
    t = state.step
    curvature = value - state.accepted_value - state.slope * t
    t_quad = -state.slope * t * t / (2.0 * jnp.where(curvature > 0, curvature, 1.0))
    t_short = jnp.where(finite & (curvature > 0), jnp.clip(t_quad, 0.1 * t, 0.5 * t), 0.1 * t)

    new_base = jnp.where(accept, x, x0)
    new_direction = jnp.where(accept, direction, state.direction)
    new_step = jnp.where(accept, jnp.asarray(1.0, x.dtype), t_short)
    next_trial = new_base + new_step * new_direction
    new_state = LbfgsState(
        accepted_params=jax.tree.map(lambda a, b: jnp.where(accept, a, b), params, state.accepted_params),
        accepted_value=jnp.where(accept, value, state.accepted_value),
        accepted_grad=jnp.where(accept, g, state.accepted_grad),
        direction=new_direction, step=new_step, slope=jnp.where(accept, slope, state.slope),
        s_memory=s_mem, y_memory=y_mem, rho_memory=rho_mem, pairs=pairs, evaluations=state.evaluations + 1,
        accepted_last=accept)
    return unravel(next_trial - x), new_state

  return optax.GradientTransformationExtraArgs(init, update)


def accepted_params(state) -> Any:
  """The last accepted point of an `lbfgs` state (inside any optax chain), or None for another optimizer's state."""
  return optax.tree_utils.tree_get(state, "accepted_params")


def accepted_last(state) -> jax.Array | None:
  """Whether the last update of an `lbfgs` state accepted its trial point, or None for another optimizer's state."""
  return optax.tree_utils.tree_get(state, "accepted_last")


def accepted_value(state) -> jax.Array | None:
  """The loss at the last accepted point of an `lbfgs` state, or None for another optimizer's state."""
  return optax.tree_utils.tree_get(state, "accepted_value")
