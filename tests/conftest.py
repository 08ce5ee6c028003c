"""Fixtures shared by several test modules."""

import os

import numpy as np
import pytest
from PIL import Image

from nst_jax import demo
from nst_jax.io import compile_cache, image_io
from nst_jax.models import adain_decoder, vgg
from nst_jax.models.preprocessing import CAFFE_VGG
from nst_jax.weights.format import VGGWeights, save_weights
from nst_jax.errors import NSTError
from nst_jax.weights.store import resolve_weights


# Seconds each test file took under the README's command (`-n auto --dist loadfile` on CI's 2 cores, measured
# 2026-12-03); used only to order the files. A file missing here runs after the listed ones. The first four are
# those figures scaled by the CPU time after / before the files' changes of 2026-12-07, as measured: highres 0.97
# (its three photoreal cases 0.87), controls 0.92, photoreal 0.91, cli 0.95 (its two photoreal runs 0.91).
FILE_SECONDS = {
    "highres_test.py": 224, "controls_test.py": 156, "photoreal_test.py": 120, "cli_test.py": 69,
    "adain_fast_test.py": 67, "gpu_suite_test.py": 47, "experiments_test.py": 42, "adain_train_test.py": 36,
    "benchmark_test.py": 32, "structure_test.py": 30, "gatys_test.py": 29, "adain_test.py": 24,
    "matting_test.py": 20, "vgg_test.py": 17, "guidance_test.py": 15, "swd_test.py": 14,
    "weights_converters_test.py": 10, "weights_fetch_test.py": 9, "mrf_test.py": 6, "weights_format_test.py": 6,
    "losses_test.py": 5, "optim_test.py": 4, "segmentation_test.py": 3, "layout_test.py": 2, "cli_errors_test.py": 2,
    "color_test.py": 2,
    # measured alone with the WCT training in the background (2026-12-07)
    "wct_test.py": 45, "wct_cli_test.py": 35, "transfer_measures_test.py": 9,
    # measured alone, likewise (2026-12-07)
    "compile_noise_test.py": 20, "interrupt_test.py": 11, "bad_input_test.py": 7,
    # measured alone beside a training job (2026-12-07)
    "photoreal_fast_test.py": 80, "photowct_test.py": 32, "closed_form_test.py": 10,
}


def pytest_configure(config):
  """pytest-xdist hands out whole files (`--dist loadfile`), by default those with the most tests first; the long
  files have few tests, so one of them often started last while the other worker sat idle. Without that reordering
  xdist follows the collection order, which `pytest_collection_modifyitems` makes longest file first (LPT)."""
  if hasattr(config.option, "loadscopereorder"):
    config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
  """Longest test files first (`FILE_SECONDS`); the order within a file is kept (a stable sort)."""
  items.sort(key=lambda item: -FILE_SECONDS.get(item.path.name, -1))


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """One persistent XLA compilation cache for the test run, in a fresh folder (so a run never depends on an
  earlier one). Separate jit objects of the same program (every `build_problem` makes its own VGG forward, mask
  carrying and loss) then compile once instead of once per test; in-process commands and the subprocesses that
  tests start find it through the environment. Under pytest-xdist the workers share the folder (the run's base
  folder, above each worker's own), so a program compiled for one test file is loaded by the other worker's files;
  an entry read while another worker is still writing it fails to decompress, which JAX treats as a miss. Only
  compilations of at least 0.2 s are written: the thousands of single-op programs that eager code compiles (43 ms
  each here) are rarely shared between files, and serialising each cost ~8% on the compile-heavy test files."""
  if os.environ.get("PYTEST_XDIST_WORKER"):
    folder = tmp_path_factory.getbasetemp().parent / "xla_cache_shared"
  else:
    folder = tmp_path_factory.mktemp("xla_cache")
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv(compile_cache.ENV, str(folder))
    compile_cache.enable(folder, min_compile_time_secs=0.2)
    yield folder
  compile_cache.enable(None)


_CACHE_SETTINGS = ("jax_enable_compilation_cache", "jax_compilation_cache_dir",
                   "jax_persistent_cache_min_compile_time_secs", "jax_persistent_cache_min_entry_size_bytes")


@pytest.fixture(autouse=True)
def compilation_cache_settings(compilation_cache):  # pylint: disable=redefined-outer-name,unused-argument
  """The run's cache settings back after each test. A command run in this process (`cli_helpers.run_cli`) points
  JAX's cache at its own folder with no minimum compile time; JAX keeps the folder it first opened, but the minimum
  stayed 0, so every later test file of that worker serialised each of its thousands of tiny eager programs."""
  import jax  # pylint: disable=import-outside-toplevel
  saved = {name: getattr(jax.config, name) for name in _CACHE_SETTINGS}
  yield
  for name, value in saved.items():
    if getattr(jax.config, name) != value:
      jax.config.update(name, value)


@pytest.fixture(scope="session")
def default_weights():
  """The real offline default (`hed-vgg16`). CI fetches it first, so there a missing file is a failure; on a
  developer machine without it the tests that need it are skipped."""
  try:
    return resolve_weights("hed-vgg16")
  except NSTError as e:
    if os.environ.get("CI"):
      raise
    pytest.skip(f"default weights not fetched: {e}")


@pytest.fixture(scope="session")
def content():
  """The demo content photo (matplotlib's sample) at 64 px on its long side."""
  return image_io.resize_long_side(demo.default_content(), 64)


@pytest.fixture(scope="module")
def flats():
  """Random float32 arrays for every key of vgg16, vgg19 and vgg16 with the HED extras (`weights_files`)."""
  from weights_files import make_flats  # pylint: disable=import-outside-toplevel (a helper module of tests/)
  return make_flats()


@pytest.fixture(scope="module")
def saved_vgg16(tmp_path_factory, flats):
  """A valid vgg16 weights file, shared: tests only read it."""
  from weights_files import make_weights  # pylint: disable=import-outside-toplevel
  from nst_jax.weights.format import save_weights  # pylint: disable=import-outside-toplevel
  path = tmp_path_factory.mktemp("saved") / "good.npz"
  save_weights(path, make_weights(flats["vgg16"]))
  return path


@pytest.fixture(scope="module")
def cli_setup(tmp_path_factory) -> dict:
  """A weights folder with a small random VGG16 and two ordinary input images."""
  root = tmp_path_factory.mktemp("cli")
  rng = np.random.default_rng(0)
  params = {name: {"kernel": (0.01 * rng.standard_normal(kernel)).astype(np.float32),
                   "bias": (0.01 * rng.standard_normal(bias)).astype(np.float32)}
            for name, (kernel, bias) in vgg.conv_shapes("vgg16").items()}
  weights_dir = root / "weights"
  save_weights(weights_dir / "fake.npz", VGGWeights(arch="vgg16", params=params, preprocessing=CAFFE_VGG,
                                                    source="test", source_sha256="0" * 64, extras={}))
  rgb = (rng.uniform(0, 1, (24, 32, 3)) * 255).astype(np.uint8)
  Image.fromarray(rgb).save(root / "content.png")
  Image.fromarray(rgb[::-1]).save(root / "style.png")
  # The commands' caches (compiled executables, AdaIN style statistics) go to this test folder, not the user's.
  env = {"NST_JAX_WEIGHTS_DIR": str(weights_dir), "NST_JAX_COMPILATION_CACHE": str(root / "xla"),
         "NST_JAX_STYLE_CACHE": str(root / "adain_styles")}
  return {"root": root, "weights": weights_dir / "fake.npz", "env": env}


@pytest.fixture(scope="module")
def adain_cli_setup(cli_setup) -> dict:
  root = cli_setup["root"]
  for name, sha in (("decoder.npz", "0" * 64), ("foreign.npz", "f" * 64)):
    adain_decoder.save_decoder(root / name, adain_decoder.DecoderCheckpoint(
        params=adain_decoder.init_decoder("vgg16", 4), arch="vgg16", width=4, encoder_sha256=sha,
        encoder_source="test"))
  Image.fromarray(np.full((24, 32), 255, np.uint8)).save(root / "mask.png")
  return {**cli_setup, "args": ["--content", str(root / "content.png"), "--style", str(root / "style.png"),
                                "--weights", str(cli_setup["weights"]), "--decoder", str(root / "decoder.npz")]}



@pytest.fixture(scope="module")
def encoder():
  """A random VGG16 encoder with Caffe preprocessing (AdaIN tests)."""
  return VGGWeights(arch="vgg16", params=vgg.random_params("vgg16", seed=1), preprocessing=CAFFE_VGG,
                    source="random test encoder", source_sha256="ab" * 32)
