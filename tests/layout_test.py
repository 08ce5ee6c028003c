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
