"""The objective layer: a loss term added to the registry runs through both engines (whole-image and tiled) with
the same value and gradient, and the engines take a resolved plan and run settings, never a config."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import demo
from nst_jax.engines.optimize import optimize_image
from nst_jax.errors import NSTError
from nst_jax.highres import distributed, highres_config, pyramid, scale_problem
from nst_jax.io import image_io
from nst_jax.methods import gatys
from nst_jax.objective.config import StylizeConfig, run_settings
from nst_jax.objective.plan import resolve_plan
from nst_jax.objective.registry import IMAGE_TERMS, ImageTerm

REPO = pathlib.Path(__file__).resolve().parents[1]
SIZE = 48
SHALLOW = dict(content_layers=("relu2_2",), style_layers=("relu1_1", "relu2_1", "relu3_1"))


@dataclasses.dataclass(frozen=True)
class BrightnessConfig(StylizeConfig):
  """A config with one more weight, as a new loss adds one."""

  brightness_weight: float = 0.0


# The toy term: the image's mean value, a whole-image term that any engine can take untiled.
BRIGHTNESS = ImageTerm("brightness", lambda image, inputs, terms: jnp.mean(image))
TERMS = {**IMAGE_TERMS, "brightness": BRIGHTNESS}


@pytest.fixture(scope="module")
def images():
  return (image_io.resize(demo.default_content(), SIZE, SIZE), image_io.resize(demo.swirl_painting(SIZE), SIZE, SIZE))


def terms_and_grad(problem, x):
  def total(image, inputs):
    terms = problem.terms_fn(image, inputs)
    return sum(terms.values()), terms
  (_, terms), grad = jax.jit(jax.value_and_grad(total, has_aux=True))(x, problem.inputs)
  return {k: float(v) for k, v in terms.items()}, np.asarray(grad)


def test_a_registered_loss_runs_through_both_engines_alike(default_weights, images):
  content, style = images
  weight = 50.0
  config = BrightnessConfig(size=SIZE, iterations=1, brightness_weight=weight, **SHALLOW)
  plan = resolve_plan(config, arch=default_weights.arch, image_terms=TERMS)
  assert BRIGHTNESS in plan.image_terms and plan.term_weights["brightness"] == weight
  untiled = gatys.problem_from_plan(plan, content=content, styles=[style], weights=default_weights)
  tiled = scale_problem.build_scale_problem(content=content, styles=[style], weights=default_weights, plan=plan,
                                            shape=(SIZE, SIZE), tile=SIZE // 2,
                                            hr=highres_config.HighresConfig(tile_size=SIZE // 2, tile_overlap=4),
                                            mesh=distributed.make_mesh())
  assert tiled.grid.num_tiles == 4
  x = jnp.asarray(untiled.x0)
  (ref, g_ref), (got, g) = terms_and_grad(untiled, x), terms_and_grad(tiled, x)
  assert set(got) == set(ref) and "brightness" in ref
  np.testing.assert_allclose(ref["brightness"], weight * float(jnp.mean(x)), rtol=1e-6)
  for key in ref:
    np.testing.assert_allclose(got[key], ref[key], rtol=2e-5, err_msg=key)
  np.testing.assert_allclose(g, g_ref, rtol=0, atol=2e-5 * np.abs(g_ref).max())

  # The term adds exactly its own gradient, weight / (number of values), to every value of the image.
  plain = gatys.problem_from_plan(resolve_plan(dataclasses.replace(config, brightness_weight=0.0),
                                               arch=default_weights.arch, image_terms=TERMS),
                                  content=content, styles=[style], weights=default_weights)
  terms, g_plain = terms_and_grad(plain, x)
  assert "brightness" not in terms
  # (Averaged over the image: each entry's difference of two float32 gradients carries their rounding.)
  np.testing.assert_allclose(np.mean(g_ref - g_plain), weight / x.size, rtol=1e-3)


def test_a_registered_loss_changes_the_result(default_weights, images):
  content, style = images

  def mean_of_result(weight: float) -> float:
    config = BrightnessConfig(size=SIZE, iterations=6, optimizer="adam", learning_rate=0.02, log_every=6,
                              brightness_weight=weight, **SHALLOW)
    problem = gatys.problem_from_plan(resolve_plan(config, arch=default_weights.arch, image_terms=TERMS),
                                      content=content, styles=[style], weights=default_weights)
    result = optimize_image(problem.terms_fn, problem.inputs, problem.x0, run=run_settings(config), progress=False)
    return float(np.mean(result.image))

  # Adam's steps are normalised: a weight whose gradient outweighs the style's moves every value down by ~lr a step.
  plain, darker = mean_of_result(0.0), mean_of_result(1e9)
  assert darker < plain - 0.05, (plain, darker)


# The engines: the optimisation loop, the tiled engine (scale problem, tiled loss, pyramid) and the whole-image
# problem. They take a resolved plan and run settings; entry points (`gatys.stylize`, `gatys.stylize_highres`,
# photoreal's stages) resolve the config into those, never an engine.
ENGINES = ("nst_jax/highres", "nst_jax/engines", "nst_jax/methods/gatys/problem.py")
# The rules that derive values from a config: the plan applies them (`resolve_plan`, which also checks the
# request), and `run_settings` copies the optimisation loop's settings out of it.
DERIVATIONS = {"per_style", "blend_weights", "style_layer_sets", "style_layer_weights", "start_kind", "start_noise",
               "uses_style_colors", "check_request", "resolve_plan", "run_settings"}


def config_uses(path: pathlib.Path) -> list[str]:
  """What in `path` reads a config other than through a plan, as 'file:line: what': imports of
  `nst_jax.objective.config`, imports and calls of DERIVATIONS, the name `StylizeConfig` (in annotations too) and
  parameters named `config`."""
  found = []
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom):
      if node.module == "nst_jax.objective.config" or (
          node.module == "nst_jax.objective" and any(a.name == "config" for a in node.names)):
        found.append((node.lineno, "imports nst_jax.objective.config"))
      found += [(node.lineno, a.name) for a in node.names if a.name in DERIVATIONS]
    elif isinstance(node, ast.Call):
      name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
      if name in DERIVATIONS:
        found.append((node.lineno, name))
    elif isinstance(node, (ast.Name, ast.Attribute)) and "StylizeConfig" in (getattr(node, "id", None),
                                                                             getattr(node, "attr", None)):
      found.append((node.lineno, "StylizeConfig"))
    elif isinstance(node, ast.arg) and node.arg == "config":
      found.append((node.lineno, "a config parameter"))
  name = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
  return sorted(f"{name}:{line}: {what}" for line, what in found)


def test_the_engines_take_a_plan_and_run_settings_and_derive_nothing_from_the_config():
  plan, run = ("plan", "ObjectivePlan"), ("run", "optim.RunSettings")
  takes = {gatys.problem_from_plan: plan, scale_problem.build_scale_problem: plan,
           highres_config.check_highres_request: plan, pyramid.run_pyramid: plan, optimize_image: run,
           pyramid.optimize_scale: run}
  for engine, (name, annotation) in takes.items():
    parameters = inspect.signature(engine).parameters
    assert parameters[name].annotation == annotation, (engine, parameters[name])
    assert "config" not in parameters and not any("StylizeConfig" in str(p.annotation)
                                                  for p in parameters.values()), engine
  assert inspect.signature(pyramid.run_pyramid).parameters["run"].annotation == "optim.RunSettings"
  paths = [p for folder in ENGINES for p in sorted((REPO / folder).rglob("*.py")) or [REPO / folder]]
  uses = [use for p in paths for use in config_uses(p)]
  assert not uses, uses


def test_the_config_check_finds_what_it_looks_for(tmp_path):
  probe = tmp_path / "probe.py"
  probe.write_text("from nst_jax.objective.config import StylizeConfig, blend_weights\n"
                   "from nst_jax.objective.plan import resolve_plan\n"
                   "def engine(plan, *, config: StylizeConfig):\n"
                   "  return settings.per_style(plan.config.style_scale, 2, 'x'), plan.config.pooling\n")
  assert [use.split(":", 1)[1] for use in config_uses(probe)] == [
      "1: blend_weights", "1: imports nst_jax.objective.config", "2: resolve_plan", "3: StylizeConfig",
      "3: a config parameter", "4: per_style"]
  # The plan is where the rules are applied; the entry points resolve a config into a plan and run settings.
  assert {use.rsplit(": ", 1)[1] for use in config_uses(REPO / "nst_jax/objective/plan.py")} >= {
      "blend_weights", "per_style", "style_layer_weights", "start_noise"}
  assert {use.rsplit(": ", 1)[1] for use in config_uses(REPO / "nst_jax/methods/gatys/run.py")} >= {
      "resolve_plan", "run_settings", "StylizeConfig", "a config parameter"}


def test_the_high_resolution_engine_refuses_terms_it_cannot_tile(default_weights):
  untileable = {**IMAGE_TERMS, "brightness": dataclasses.replace(BRIGHTNESS, tiling=False)}
  plan = resolve_plan(BrightnessConfig(size=SIZE, brightness_weight=1.0), arch=default_weights.arch,
                      image_terms=untileable)
  with pytest.raises(NSTError, match="StylizeConfig.brightness_weight is not supported by the high-resolution"):
    highres_config.check_highres_request(highres_config.HighresConfig(), plan)
