"""L-BFGS with one evaluation per step (`nst_jax.lbfgs`), against SciPy and optax's zoom L-BFGS."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from nst_jax import lbfgs, optim


def rosenbrock(x, inputs):
  del inputs
  return jnp.sum(100.0 * jnp.square(x[1:] - jnp.square(x[:-1])) + jnp.square(1.0 - x[:-1]))


def run(loss, x0, steps, optimizer, chunk=7):
  state = optim.init_state(optimizer, x0)
  runner = optim.make_chunk_runner(loss, optimizer, chunk_size=chunk,
                                   reuse_linesearch_value=optim.has_linesearch_state(state))
  x, history, done = jnp.array(x0), [], 0
  while done < steps:
    n = min(chunk, steps - done)
    x, state, losses = runner(x, state, None, n)
    history.extend(np.asarray(losses[:n]))
    done += n
  return optim.best_params(x, state), state, np.asarray(history)


X0 = jnp.asarray([-1.2, 1.0, -0.5, 0.8, 1.5], jnp.float32)


def test_reaches_scipys_minimum_of_rosenbrock_and_the_loss_never_rises():
  x, state, history = run(rosenbrock, X0, 150, lbfgs.lbfgs())
  reference = scipy.optimize.minimize(lambda v: float(rosenbrock(jnp.asarray(v, jnp.float32), None)),
                                      np.asarray(X0, np.float64), method="L-BFGS-B",
                                      jac=lambda v: np.asarray(jax.grad(rosenbrock)(jnp.asarray(v, jnp.float32),
                                                                                     None), np.float64))
  np.testing.assert_allclose(np.asarray(x), reference.x, atol=2e-3)
  assert np.all(np.diff(history) <= 0), "the reported loss is the accepted point's, which never rises"
  assert float(state.accepted_value) == pytest.approx(float(rosenbrock(x, None)))


def test_one_step_evaluates_the_loss_once_where_the_zoom_search_traces_it_three_times():
  traces = {}

  def counting(name):
    def loss(x, inputs):
      traces[name] = traces.get(name, 0) + 1
      return rosenbrock(x, inputs)
    return loss

  run(counting("lbfgs"), X0, 3, lbfgs.lbfgs())
  run(counting("lbfgs_zoom"), X0, 3, optim.make_optimizer("lbfgs_zoom"))
  assert traces["lbfgs"] == 1
  assert traces["lbfgs_zoom"] >= 3


def test_reaches_a_lower_loss_than_the_zoom_search_for_the_same_number_of_evaluations():
  """Each zoom step costs at least one evaluation; with as many steps as our evaluations it is still not ahead."""
  _, _, ours = run(rosenbrock, X0, 40, lbfgs.lbfgs())
  _, _, zoom = run(rosenbrock, X0, 40, optim.make_optimizer("lbfgs_zoom"))
  assert ours[-1] < 0.1 * ours[0]
  assert ours[-1] <= 1.5 * zoom[-1]


def test_a_non_finite_trial_is_rejected_and_the_step_shortened():
  def cliff(x, inputs):  # NaN beyond x = 0.5: the first full step towards the minimum at 2 lands there
    del inputs
    return jnp.where(x[0] > 0.5, jnp.nan, jnp.square(x[0] - 2.0))

  x, state, history = run(cliff, jnp.zeros(1), 12, lbfgs.lbfgs())
  assert np.all(np.isfinite(history)) and np.all(np.diff(history) <= 0)
  assert 0.0 < float(x[0]) <= 0.5


def test_a_run_resumed_from_its_state_and_pending_point_equals_an_uninterrupted_one():
  opt = lbfgs.lbfgs()
  straight, _, _ = run(rosenbrock, X0, 20, opt, chunk=20)
  state = optim.init_state(opt, X0)
  runner = optim.make_chunk_runner(rosenbrock, opt, chunk_size=20, reuse_linesearch_value=False)
  x, state, _ = runner(jnp.array(X0), state, None, 9)
  saved_x, saved_state = np.asarray(x), jax.tree.map(np.asarray, state)  # what a checkpoint keeps
  x, state, _ = runner(jnp.asarray(saved_x), jax.tree.map(jnp.asarray, saved_state), None, 11)
  np.testing.assert_array_equal(np.asarray(optim.best_params(x, state)), np.asarray(straight))
