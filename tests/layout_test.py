"""The shape of the code base: no module over 500 lines, no module using another module's private names, and a
README layout section that lists exactly the modules there are."""

from __future__ import annotations

import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
MAX_LINES = 500
# Import roots whose private names are off limits elsewhere: the package, the experiments' shared modules and the
# tests' helper modules.
OWN = ("nst_jax", "experiments", "weights_files", "cli_helpers", "adain_helpers")


def python_files(*folders: str) -> list[pathlib.Path]:
  return sorted(p for folder in folders for p in (REPO / folder).rglob("*.py") if "__pycache__" not in p.parts)


def test_no_module_over_500_lines():
  long = {str(p.relative_to(REPO)): n for p in python_files("nst_jax", "experiments", "tests")
          if (n := len(p.read_text().splitlines())) > MAX_LINES}
  assert not long, long


def private_uses(path: pathlib.Path) -> list[str]:
  """`module._name` and `from module import _name` for modules of OWN, as 'file:line: text'."""
  tree = ast.parse(path.read_text())
  own_names, found = set(), []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      own_names |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] in OWN}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in OWN:
      own_names |= {a.asname or a.name for a in node.names}
      found += [f"{node.lineno}: from {node.module} import {a.name}" for a in node.names
                if a.name.startswith("_") and not a.name.startswith("__")]
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in own_names
        and node.attr.startswith("_") and not node.attr.startswith("__")):
      found.append(f"{node.lineno}: {node.value.id}.{node.attr}")
  name = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
  return [f"{name}:{line}" for line in found]


def test_no_module_uses_another_modules_private_names():
  uses = [use for p in python_files("nst_jax", "experiments", "tests") for use in private_uses(p)]
  assert not uses, uses


def test_the_private_name_check_finds_what_it_looks_for(tmp_path):
  path = tmp_path / "probe.py"
  path.write_text("from nst_jax.methods import gatys\nfrom nst_jax.io.image_io import _WRITERS\n"
                  "import numpy as np\nx = gatys._NORMALIZED\ny = np._NoValue\n")
  assert [use.split(":", 1)[1] for use in private_uses(path)] == [
      "2: from nst_jax.io.image_io import _WRITERS", "4: gatys._NORMALIZED"]


def layout_tree(readme: str) -> set[str]:
  """The paths of the README's layout tree: each line names files (and a folder, `name/`) before its comment; two
  spaces of indentation per folder level."""
  section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
  block = section.split("```\n", 2)[1]
  paths, folders = set(), []
  for line in block.splitlines():
    depth = (len(line) - len(line.lstrip(" "))) // 2
    del folders[depth:]
    for token in line.split():
      if token.endswith("/"):
        folders.append(token.rstrip("/"))
        break
      if not token.endswith(".py"):
        break
      paths.add("/".join([*folders, token]))
  return paths


def test_readme_layout_lists_every_module():
  listed = {p for p in layout_tree((REPO / "README.md").read_text())
            if p.startswith(("nst_jax/", "experiments/benchmarks/benchmarking/"))}
  modules = {str(p.relative_to(REPO)) for p in python_files("nst_jax", "experiments/benchmarks/benchmarking")}
  assert listed == modules, {"missing from README": sorted(modules - listed),
                             "not in the tree": sorted(listed - modules)}


# The layers, lowest first: a module may import modules of its own layer or of lower ones. `experiments/` sits on
# top of `cli`; nothing in nst_jax imports it.
LAYERS = ("errors/io", "models", "weights", "losses", "objective", "engines/methods", "cli", "experiments")
LAYER_OF = {
    "nst_jax": "errors/io",            # the package's __init__
    "nst_jax.errors": "errors/io",
    "nst_jax.io": "errors/io",
    "nst_jax.demo": "errors/io",       # sample and generated images (image_io)
    "nst_jax.figures": "errors/io",    # contact sheets of images (image_io)
    "nst_jax.models": "models",
    "nst_jax.weights": "weights",
    "nst_jax.losses": "losses",
    "nst_jax.optim": "losses",         # optimizers and the chunked runner: numeric tools like the losses
    "nst_jax.metrics": "losses",       # measures of results, built on losses.color
    "nst_jax.video": "losses",         # flow, masks, warping, the consistency pass: numeric tools like the losses
    "nst_jax.objective": "objective",
    "nst_jax.engines": "engines/methods",
    "nst_jax.highres": "engines/methods",
    "nst_jax.methods": "engines/methods",
    "nst_jax.cli": "cli",
    "nst_jax.__main__": "cli",
}


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(REPO).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
  """The index in LAYERS of `module` (a dotted nst_jax name): its longest prefix in LAYER_OF."""
  parts = module.split(".")
  for end in range(len(parts), 0, -1):
    if ".".join(parts[:end]) in LAYER_OF:
      return LAYERS.index(LAYER_OF[".".join(parts[:end])])
  raise AssertionError(f"{module} has no layer in LAYER_OF")


def nst_imports(source: str) -> list[tuple[int, str]]:
  """(line, dotted module) of every nst_jax module `source` imports, at any depth (`from pkg import module` names
  the module)."""
  found = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "nst_jax"]
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "nst_jax":
      for alias in node.names:
        candidate = f"{node.module}.{alias.name}"
        is_module = (REPO / (candidate.replace(".", "/") + ".py")).is_file() or (
            REPO / candidate.replace(".", "/")).is_dir()
        found.append((node.lineno, candidate if is_module else node.module))
  return found


def layer_climbs(modules: dict[str, str]) -> list[str]:
  """Imports of a higher layer in `modules` ({dotted name: source})."""
  climbs = []
  for module, source in modules.items():
    for line, imported in nst_imports(source):
      if layer_of(imported) > layer_of(module):
        climbs.append(f"{module}:{line}: {module} ({LAYERS[layer_of(module)]}) imports {imported} "
                      f"({LAYERS[layer_of(imported)]})")
  return climbs


def package_sources() -> dict[str, str]:
  return {module_name(p): p.read_text() for p in python_files("nst_jax")}


def test_no_module_imports_a_higher_layer():
  climbs = layer_climbs(package_sources())
  assert not climbs, climbs


def test_the_layer_check_finds_what_it_looks_for():
  probe = {"nst_jax.losses.probe": "from nst_jax.objective import plan\nfrom nst_jax.models import vgg\n"
                                   "def f():\n  from nst_jax.cli import main\n"}
  assert [c.split(": ", 1)[1] for c in layer_climbs(probe)] == [
      "nst_jax.losses.probe (losses) imports nst_jax.objective.plan (objective)",
      "nst_jax.losses.probe (losses) imports nst_jax.cli.main (cli)"]


def test_packages_of_one_layer_do_not_import_each_other_in_a_cycle():
  """Same-layer packages (engines, highres, methods) may import one another one way only."""
  edges = set()
  for module, source in package_sources().items():
    package = ".".join(module.split(".")[:2])
    for _, imported in nst_imports(source):
      target = ".".join(imported.split(".")[:2])
      if target != package and layer_of(target) == layer_of(package):
        edges.add((package, target))
  cycles = sorted((a, b) for a, b in edges if (b, a) in edges and a < b)
  assert not cycles, cycles
