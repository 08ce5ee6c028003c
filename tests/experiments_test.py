"""The figure scripts in experiments/: every one imports and exposes run(settings); the cheapest runs end to end."""

import importlib
import json
import pathlib
import sys

import pytest

EXPERIMENTS = pathlib.Path(__file__).resolve().parent.parent / "experiments"
SCRIPTS = ("gatys2016_fig3", "gatys2016_fig4", "gatys2017_color", "gatys2017_scale", "gatys2017_spatial",
           "texture_synthesis", "hyperparameter_study")


@pytest.fixture(scope="module")
def modules():
  sys.path.insert(0, str(EXPERIMENTS))
  try:
    yield {name: importlib.import_module(name) for name in SCRIPTS}
  finally:
    sys.path.remove(str(EXPERIMENTS))


def test_every_script_has_run_quick_full_and_a_run_command(modules):
  for name, module in modules.items():
    assert callable(module.run), name
    assert module.QUICK["size"] <= 128 and module.FULL["size"] >= module.QUICK["size"], name
    assert f"python experiments/{name}.py --quick" in module.__doc__, name
    assert "Expected" in module.__doc__, name


def test_color_figure_end_to_end(modules, default_weights, tmp_path):
  del default_weights  # only its skip / CI failure when the weights are absent; run() loads them by name
  common = modules["gatys2017_color"].common
  # The demo images: the test must not depend on ../shared/data being present. Three of the four variants keep the
  # test under 30 s on a busy 2-core CPU (each run is mostly its XLA compilation).
  variants = ("plain", "luminance", "histogram (eigen)")
  settings = common.Settings(out_dir=tmp_path / "color", size=32, iterations=3, quick=True, data_dir="")
  record = modules["gatys2017_color"].run(settings, variants=variants)
  assert (tmp_path / "color" / "sheet.png").stat().st_size > 0
  on_disk = json.loads((tmp_path / "color" / "results.json").read_text())
  assert on_disk == json.loads(json.dumps(common.to_jsonable(record)))
  assert set(on_disk) >= {"settings", "figure", "images", "outputs", "seconds_total", "files"}
  assert set(on_disk["outputs"]) == set(variants)
  for output in on_disk["outputs"].values():
    assert set(output) >= {"y_mae", "i_mae", "q_mae", "iq_mae", "initial_terms", "final_terms", "seconds"}
  # Luminance-only transfer keeps the content's chroma; plain transfer does not.
  assert on_disk["outputs"]["luminance"]["iq_mae"] < 0.01 < on_disk["outputs"]["plain"]["iq_mae"]
