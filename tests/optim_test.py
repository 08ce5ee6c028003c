"""Optimizers by name and the chunked, jitted optimisation loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import optim
from nst_jax.errors import NSTError

# An ill-conditioned quadratic with a known minimiser: what L-BFGS is for.
_SCALES = jnp.asarray([1.0, 10.0, 100.0, 0.5])
_TARGET = jnp.asarray([0.3, -1.0, 2.0, 0.7])


def quadratic(x, inputs):
  return jnp.sum(inputs["scales"] * jnp.square(x - inputs["target"]))


def run_steps(name, steps, chunk=5, **kwargs):
  opt = optim.make_optimizer(name, **kwargs)
  x = jnp.zeros(4)
  state = optim.init_state(opt, x)
  run = optim.make_chunk_runner(quadratic, opt, chunk_size=chunk,
                                reuse_linesearch_value=optim.has_linesearch_state(state))
  inputs = {"scales": _SCALES, "target": _TARGET}
  history = []
  done = 0
  while done < steps:
    n = min(chunk, steps - done)
    x, state, losses = run(x, state, inputs, n)
    losses = np.asarray(losses)
    assert np.all(np.isnan(losses[n:])), "entries past num_steps stay NaN"
    history.extend(losses[:n])
    done += n
  return np.asarray(x), np.asarray(history), run


def test_lbfgs_solves_ill_conditioned_quadratic():
  x, history, _ = run_steps("lbfgs", 12)
  np.testing.assert_allclose(x, _TARGET, atol=1e-4)
  assert history[-1] < 1e-6 * history[0]


@pytest.mark.parametrize("name,lr", [("adam", 0.1), ("sgd", 0.004), ("adamw", 0.1), ("lbfgs", 0.5)])
def test_every_optimizer_lowers_the_loss(name, lr):
  _, history, _ = run_steps(name, 40, learning_rate=lr)
  assert history[-1] < 0.5 * history[0]


@pytest.mark.parametrize("name", ["adam", "lbfgs"])
def test_chunks_of_any_length_reuse_one_compilation(name):
  _, _, run = run_steps(name, 13, chunk=5)  # chunks of 5, 5, 3
  assert run._cache_size() == 1


def test_init_state_has_fixed_types_so_the_second_chunk_is_not_compiled_again():
  """optax starts the zoom line search's state with weakly typed scalars that the loop returns strongly typed: from
  `opt.init` the loop is compiled twice, from `init_state` once."""
  opt = optim.make_optimizer("lbfgs_zoom")
  x, inputs = jnp.zeros(4), {"scales": _SCALES, "target": _TARGET}
  weak = [leaf for leaf in jax.tree.leaves(opt.init(x)) if getattr(leaf, "weak_type", False)]
  assert weak and not any(getattr(leaf, "weak_type", False) for leaf in jax.tree.leaves(optim.init_state(opt, x)))
  for init, compilations in ((lambda: jax.tree.map(jnp.copy, opt.init(x)), 2), (lambda: optim.init_state(opt, x), 1)):
    loss = lambda x, inputs: quadratic(x, inputs)  # noqa: E731 (a new function: a runner of its own)
    run = optim.make_chunk_runner(loss, opt, chunk_size=3, reuse_linesearch_value=True)
    state, y = init(), jnp.copy(x)  # (the runner donates its x)
    for _ in range(2):
      y, state, _ = run(y, state, inputs, 3)
    assert run._cache_size() == compilations


def test_cached_optimizer_is_one_object_per_setting():
  a = optim.cached_optimizer("adam", learning_rate=0.1, schedule="constant", iterations=1, options=(("b1", 0.8),),
                             normalize_gradients=False)
  assert a is optim.cached_optimizer("adam", learning_rate=0.1, schedule="constant", iterations=1,
                                     options=(("b1", 0.8),), normalize_gradients=False)
  assert a is not optim.cached_optimizer("adam", learning_rate=0.2, schedule="constant", iterations=1,
                                         options=(("b1", 0.8),), normalize_gradients=False)


def test_unknown_optimizer_is_a_clear_error():
  with pytest.raises(NSTError, match="unknown optimizer 'nonsense'"):
    optim.make_optimizer("nonsense")
  with pytest.raises(NSTError, match="unknown optimizer"):
    optim.make_optimizer("_src")


def test_runner_reports_the_terms_of_its_first_and_accepted_points_from_its_own_evaluations():
  """With `with_terms` the runner returns the terms at the chunk's start and, for 'lbfgs', at its accepted point
  (`best_params`), equal to evaluating them there; `optimize_image` then compiles no program of its own for them."""
  from nst_jax.engines import optimize  # noqa: PLC0415 (engines sit above optim; only this test needs them)

  def terms_fn(x, inputs):
    return {"fit": jnp.sum(inputs["scales"] * jnp.square(x - inputs["target"])), "size": 0.1 * jnp.sum(x * x)}

  inputs = {"scales": _SCALES, "target": jnp.asarray([0.3, 0.9, 0.2, 0.7])}  # inside [0, 1]: results are clipped
  opt = optim.make_optimizer("lbfgs")
  x0 = jnp.asarray([1.0, 0.0, 1.0, 0.0])
  run = optim.make_chunk_runner(optimize.SummedTerms(terms_fn), opt, chunk_size=4, reuse_linesearch_value=False,
                                with_terms=True)
  x, state, _, (first, latest) = run(jnp.array(x0), optim.init_state(opt, x0), inputs, 4)
  for got, at in ((first, x0), (latest, optim.best_params(x, state))):
    want = terms_fn(at, inputs)
    for name in want:
      np.testing.assert_allclose(float(got[name]), float(want[name]), rtol=1e-6)
  result = optimize.optimize_image(terms_fn, inputs, x0, run=optim.RunSettings(iterations=6, log_every=3),
                                   progress=False)
  assert optimize.jitted_terms(terms_fn)._cache_size() == 0
  np.testing.assert_allclose(result.final_terms["fit"], float(terms_fn(jnp.asarray(result.image), inputs)["fit"]),
                             rtol=1e-5)
