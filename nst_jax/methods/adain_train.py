"""Training the AdaIN decoder (Huang & Belongie 2017, section 6): data-parallel jitted steps, a threaded input
pipeline, atomic checkpoints with exact resume, and a metrics record.

- Optimiser: Adam with the paper's inverse-time decay, lr_t = lr / (1 + decay * t) (lr 1e-4, decay 5e-5).
- Step: one `jax.jit` over a `Mesh` of all devices; the content and style batches are sharded along the batch axis
  (`NamedSharding(mesh, P("data"))`), decoder/encoder parameters and optimiser state replicated. The loss is a
  mean over the global batch, so the result does not depend on the number of devices (up to summation order).
- Input: an `ImagePool` decodes images on first use (capped at `max_side` px) and keeps them up to a memory budget,
  so folders of the paper's size fit; every batch is made on a thread pool from its own generator seeded by
  (seed, step) -- random scale, crop, flip -- and kept `prefetch` steps ahead, so the device does not wait on
  decoding and batch k is the same whether or not the run was resumed.
- Checkpoint: one state file of `nst_jax.io.checkpoint` (format "nst_jax-adain-training": decoder, Adam state, step,
  config) written atomically; resuming from it gives bit-identical next steps. Checkpoints from before that format
  (arrays "leaf0000"...) still resume.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
import pathlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from PIL import Image, UnidentifiedImageError

from nst_jax.errors import NSTError
from nst_jax.io import atomic, checkpoint, image_io
from nst_jax.methods import adain
from nst_jax.models import adain_decoder, vgg
from nst_jax.models.preprocessing import Preprocessing
from nst_jax.weights.format import VGGWeights

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
CHECKPOINT_FORMAT = "nst_jax-adain-training"
CHECKPOINT_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  crop: int = 256
  batch: int = 8
  steps: int = 160_000
  lr: float = 1e-4
  lr_decay: float = 5e-5
  style_weight: float = 10.0
  content_weight: float = 1.0
  width: int = 64
  seed: int = 0
  min_scale: float = 1.0  # random crops are taken from the image resized so its short side is crop * [min, max]
  max_scale: float = 2.0
  style_hue: float = 0.0  # style crops' hues are rotated by U(-1, 1) * style_hue * 180 degrees (0: off)

  def __post_init__(self) -> None:
    if self.crop < 16 or self.crop % 8:
      raise NSTError(f"--crop must be a multiple of 8 and at least 16, got {self.crop}")
    if self.batch < 1 or self.steps < 0 or self.lr <= 0 or self.lr_decay < 0:
      raise NSTError(f"--batch, --steps, --lr, --lr_decay must be positive, got {self.batch}, {self.steps}, "
                     f"{self.lr}, {self.lr_decay}")
    if not 0 < self.min_scale <= self.max_scale:
      raise NSTError(f"scales must satisfy 0 < min <= max, got {self.min_scale}, {self.max_scale}")
    if not 0 <= self.style_hue <= 1:
      raise NSTError(f"--style_hue must be in [0, 1], got {self.style_hue}")


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
  """Adam with lr / (1 + decay * step), the schedule of the paper's code."""
  return optax.adam(lambda step: config.lr / (1.0 + config.lr_decay * step))


# ----------------------------------------------------------------------------------------------------------------
# Loss and step


def loss_terms(dec_params, enc_params, content, style, *, arch: str, width: int, preprocessing: Preprocessing,
               style_weight: float, content_weight: float, backward=None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """(total, {'content', 'style'}) for RGB [0, 1] batches; gradients flow only into the decoder output."""
  enc = dict(arch=arch, preprocessing=preprocessing, backward=backward)
  c_feats = jax.lax.stop_gradient(adain.encode(enc_params, content, **enc)[adain_decoder.ENCODER_LAYER])
  s_feats = jax.lax.stop_gradient(adain.encode(enc_params, style, layers=adain.STYLE_LAYERS, **enc))
  target = adain.adain(c_feats, s_feats[adain_decoder.ENCODER_LAYER])
  output = adain_decoder.decode(dec_params, target, arch=arch, width=width)
  terms = output_terms(enc_params, output, target=target, style_feats=s_feats, **enc)
  return content_weight * terms["content"] + style_weight * terms["style"], terms


def output_terms(enc_params, output, *, target: jax.Array, style_feats: Mapping[str, jax.Array], arch: str,
                 preprocessing: Preprocessing, backward=None) -> dict[str, jax.Array]:
  """{'content', 'style'}: the two terms of the training objective for RGB outputs (N, H, W, 3)."""
  o_feats = adain.encode(enc_params, output, layers=adain.STYLE_LAYERS, arch=arch, preprocessing=preprocessing,
                         backward=backward)
  return {"content": adain.content_loss(output_feats=o_feats[adain_decoder.ENCODER_LAYER], target=target),
          "style": adain.style_stats_loss(output_feats=o_feats, style_feats=style_feats)}


@functools.partial(jax.jit, static_argnames=("arch", "preprocessing", "steps"))
def _objective_and_optimum(enc_params, content, style, output, style_weight, content_weight, learning_rate, *,
                           arch, preprocessing, steps):
  enc = dict(arch=arch, preprocessing=preprocessing)
  s_feats = adain.encode(enc_params, style, layers=adain.STYLE_LAYERS, **enc)
  layer = adain_decoder.ENCODER_LAYER
  target = adain.adain(adain.encode(enc_params, content, **enc)[layer], s_feats[layer])
  backward = vgg.backward_kernels(enc_params)  # once, not per step (same gradients, cheaper input gradients)

  def terms(image):
    t = output_terms(enc_params, image, target=target, style_feats=s_feats, backward=backward, **enc)
    return {**t, "objective": content_weight * t["content"] + style_weight * t["style"]}

  adam = optax.adam(learning_rate)

  def step(_, carry):
    image, state = carry
    updates, state = adam.update(jax.grad(lambda x: terms(x)["objective"])(image), state)
    return jnp.clip(optax.apply_updates(image, updates), 0.0, 1.0), state  # projected onto valid images

  optimum, _ = jax.lax.fori_loop(0, steps, step, (content, adam.init(content)))
  return terms(output), optimum, terms(optimum)


def objective_optimum(model: adain.Model, content: np.ndarray, style: np.ndarray, output: np.ndarray, *,
                      style_weight: float, content_weight: float = 1.0, steps: int = 300,
                      learning_rate: float = 0.01) -> tuple[dict[str, float], np.ndarray, dict[str, float]]:
  """The training objective's terms for a stylised `output` of (`content`, `style`), and the image that minimises
  that objective directly: Adam on the pixels for `steps` steps from the content, projected onto [0, 1].

  Returns (output's terms, optimised image, its terms), each terms {'content', 'style', 'objective'}. The
  optimised image is what the objective asks of a decoder for this one pair, found by per-image optimisation (the
  paper's section 7.1 measures its training losses on AdaIN's outputs and on those of Gatys et al.'s optimisation;
  here the optimisation is of that objective itself); the gap between the two shows how much of it the decoder has
  learned. Images are (H, W, 3) in [0, 1]; `output` has the content's shape.
  """
  if output.shape != content.shape:
    raise NSTError(f"output shape {output.shape} differs from the content's {content.shape}")
  if steps < 0:
    raise NSTError(f"optimisation steps must be >= 0, got {steps}")
  batch = [jnp.asarray(x, jnp.float32)[None] for x in (content, style, output)]
  out_terms, optimum, opt_terms = _objective_and_optimum(
      model.enc_params, *batch, jnp.float32(style_weight), jnp.float32(content_weight), jnp.float32(learning_rate),
      arch=model.arch, preprocessing=model.preprocessing, steps=steps)
  return _floats(out_terms), np.asarray(optimum[0]), _floats(opt_terms)


def _floats(terms: Mapping[str, jax.Array]) -> dict[str, float]:
  return {k: float(v) for k, v in terms.items()}


@dataclasses.dataclass
class Trainer:
  """Holds the mesh, the shardings and the one compiled step."""

  config: TrainConfig
  weights: VGGWeights
  mesh: Mesh
  step_fn: Callable
  enc_params: Any
  backward: Any
  optimizer: optax.GradientTransformation

  @property
  def data_sharding(self) -> NamedSharding:
    return NamedSharding(self.mesh, P("data"))

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  def init_state(self, params: Mapping[str, Any] | None = None) -> dict:
    """Step 0 with fresh Adam moments: a random decoder, or `params` (fine-tuning a trained decoder)."""
    fresh = adain_decoder.init_decoder(self.weights.arch, self.config.width, seed=self.config.seed)
    if params is None:
      params = fresh
    elif {k: np.shape(v) for k, v in params.items()} != {k: np.shape(v) for k, v in fresh.items()}:
      raise NSTError(f"--init_decoder: its arrays do not fit a width-{self.config.width} {self.weights.arch} decoder")
    else:
      params = {k: np.asarray(v, np.float32) for k, v in params.items()}
    return self.place({"params": params, "opt_state": self.optimizer.init(params), "step": 0})

  def place(self, state: dict) -> dict:
    return {"params": jax.device_put(state["params"], self.replicated),
            "opt_state": jax.device_put(state["opt_state"], self.replicated), "step": int(state["step"])}

  def shard_batch(self, content: np.ndarray, style: np.ndarray) -> tuple[jax.Array, jax.Array]:
    return jax.device_put(content, self.data_sharding), jax.device_put(style, self.data_sharding)

  def step(self, state: dict, content, style) -> tuple[dict, dict[str, float]]:
    params, opt_state, terms = self.step_fn(state["params"], state["opt_state"], self.enc_params, self.backward,
                                            content, style)
    return {"params": params, "opt_state": opt_state, "step": state["step"] + 1}, terms


def make_trainer(config: TrainConfig, weights: VGGWeights, devices: Sequence[jax.Device] | None = None) -> Trainer:
  devices = list(devices if devices is not None else jax.devices())
  if config.batch % len(devices):
    raise NSTError(f"--batch {config.batch} must be a multiple of the number of devices ({len(devices)})")
  mesh = Mesh(np.array(devices), ("data",))
  optimizer = make_optimizer(config)
  replicated, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  enc_params = jax.device_put(vgg.params_for(weights.arch, weights.params, adain.STYLE_LAYERS), replicated)
  backward = jax.device_put(vgg.backward_kernels(enc_params), replicated)

  def train_step(params, opt_state, enc, bwd, content, style):
    def total(p):
      return loss_terms(p, enc, content, style, arch=weights.arch, width=config.width,
                        preprocessing=weights.preprocessing, style_weight=config.style_weight,
                        content_weight=config.content_weight, backward=bwd)
    (loss, terms), grads = jax.value_and_grad(total, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, {"loss": loss, **terms,
                                                             "grad_norm": optax.tree.norm(grads)}

  step_fn = jax.jit(train_step, in_shardings=(replicated, replicated, replicated, replicated, data, data),
                    out_shardings=(replicated, replicated, replicated), donate_argnums=(0, 1))
  return Trainer(config, weights, mesh, step_fn, enc_params, backward, optimizer)


# ----------------------------------------------------------------------------------------------------------------
# Input pipeline


def list_images(folders: Sequence[str | os.PathLike], *, exclude: Sequence[str] = ()) -> list[pathlib.Path]:
  """Image files directly in `folders` (or the files themselves), sorted, minus names in `exclude`."""
  paths: list[pathlib.Path] = []
  for folder in folders:
    folder = pathlib.Path(folder)
    if folder.is_file():
      paths.append(folder)
    elif folder.is_dir():
      paths += sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
      raise NSTError(f"image folder {str(folder)!r} does not exist")
  excluded = set(exclude)
  return [p for p in paths if p.name not in excluded and p.stem not in excluded]


def _cap(image: np.ndarray, max_side: int) -> np.ndarray:
  return image_io.resize_long_side(image, max_side) if max(image.shape[:2]) > max_side else image


def to_uint8(image: np.ndarray, max_side: int) -> np.ndarray:
  """A float [0, 1] image capped at `max_side` px as uint8: how `ImagePool` keeps decoded images."""
  return (np.clip(_cap(np.asarray(image, np.float32), max_side), 0, 1) * 255).astype(np.uint8)


def _header_problem(path: pathlib.Path) -> str | None:
  """None when `path` opens as an image with a non-empty size; otherwise what is wrong, in a few words."""
  try:
    with Image.open(path) as im:
      return None if im.width > 0 and im.height > 0 else "has an empty image size"
  except UnidentifiedImageError:
    return "is not an image file Pillow can read"
  except Exception as e:  # pylint: disable=broad-except
    return f"could not be opened: {type(e).__name__}: {e}"  # missing, unreadable, too large, ...


class ImagePool(Sequence):
  """Training images as uint8 (H, W, 3), capped at `max_side`, decoded on first use on the batch threads.

  Decoded images are kept while their total stays under `cache_bytes`: a small set is decoded once, and a folder
  of the paper's size (~80k photos, ~80k paintings: ~50 GB each decoded at 512 px) trains in bounded memory, the
  images beyond the budget being decoded again when drawn. Arrays pass through (capped). Files without a readable
  image header are left out at construction (logged), and a file that fails to decode twice in a row later is
  logged once and replaced by the next image for the rest of the run, so one corrupt file in tens of thousands does
  not end a long run; batches stay a function of (seed, step) as long as files fail always or never.
  """

  def __init__(self, sources: Sequence[pathlib.Path | np.ndarray], *, max_side: int, cache_bytes: int = 8 << 30,
               threads: int = 8, log: Callable[[str], None] = print) -> None:
    if cache_bytes < 0 or threads < 1:
      raise NSTError(f"the image cache must be >= 0 bytes and threads >= 1, got {cache_bytes}, {threads}")
    self.max_side, self.cache_bytes, self._log = max_side, cache_bytes, log
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
      problems = list(pool.map(lambda src: None if isinstance(src, np.ndarray) else _header_problem(src), sources))
    self._sources = []
    for src, problem in zip(sources, problems):
      if problem:
        log(f"skipped: training image {str(src)!r} {problem}")
      else:
        self._sources.append(to_uint8(src, max_side) if isinstance(src, np.ndarray) else pathlib.Path(src))
    if not self._sources:
      raise NSTError("no readable training images")
    self._cache: dict[int, np.ndarray] = {}
    self.cached_bytes = 0
    self._broken: set[int] = set()
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return len(self._sources)

  def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
    index = range(len(self))[index]  # an int in range (IndexError otherwise)
    for offset in range(len(self)):
      i = (index + offset) % len(self)
      src = self._sources[i]
      if isinstance(src, np.ndarray):
        return src
      if i in self._cache:
        return self._cache[i]
      if i in self._broken:
        continue
      try:
        img = self._decode(src)
      except NSTError as e:
        with self._lock:
          if i not in self._broken:
            self._broken.add(i)
            self._log(f"skipped: {e}")
        continue
      img.setflags(write=False)  # shared between threads and batches
      with self._lock:
        if i not in self._cache and self.cached_bytes + img.nbytes <= self.cache_bytes:
          self._cache[i] = img
          self.cached_bytes += img.nbytes
      return img
    raise NSTError("no training image could be decoded")

  def _decode(self, path: pathlib.Path) -> np.ndarray:
    try:
      return to_uint8(image_io.load_image(path, what="training image"), self.max_side)
    except NSTError:  # once more: a network file system may fail once; a corrupt file fails every time
      return to_uint8(image_io.load_image(path, what="training image"), self.max_side)


def random_crop(image: np.ndarray, rng: np.random.Generator, *, crop: int, min_scale: float,
                max_scale: float) -> np.ndarray:
  """A crop x crop float32 patch: the image scaled so its short side is crop * U(min, max) (up to its own size),
  a uniformly placed window, a horizontal flip with probability 1/2."""
  h, w = image.shape[:2]
  short = min(h, w)
  target_short = crop * rng.uniform(min_scale, max_scale)
  window = max(1, min(short, int(round(crop * short / target_short))))  # source pixels that become `crop`
  y, x = rng.integers(0, h - window + 1), rng.integers(0, w - window + 1)
  patch = Image.fromarray(image[y:y + window, x:x + window]).resize((crop, crop), Image.Resampling.BILINEAR)
  out = np.asarray(patch, np.float32) / 255.0
  return out[:, ::-1] if rng.random() < 0.5 else out


def rotate_hue(image: np.ndarray, degrees: float) -> np.ndarray:
  """`image` (RGB [0, 1]) with its colours rotated by `degrees` about the grey axis, clipped to [0, 1].

  A rotation about (1, 1, 1) keeps every pixel's grey level (r + g + b) / 3 and its distance from grey (chroma),
  so a style crop keeps its brush strokes and contrast but gets another palette: more styles' colour statistics
  for a decoder trained on few paintings."""
  theta = np.deg2rad(degrees)
  axis = np.full(3, 1 / np.sqrt(3))
  cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
  rotation = np.cos(theta) * np.eye(3) + np.sin(theta) * cross + (1 - np.cos(theta)) * np.outer(axis, axis)
  return np.clip(image @ rotation.T.astype(np.float32), 0.0, 1.0)


def make_batch(contents: Sequence[np.ndarray], styles: Sequence[np.ndarray], step: int, *, config: TrainConfig,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
  """The (content, style) batch of `step`: a pure function of (seed, step) and the image pools."""
  rng = np.random.default_rng([seed, step])
  kw = dict(crop=config.crop, min_scale=config.min_scale, max_scale=config.max_scale)
  c = [random_crop(contents[rng.integers(len(contents))], rng, **kw) for _ in range(config.batch)]
  s = [random_crop(styles[rng.integers(len(styles))], rng, **kw) for _ in range(config.batch)]
  if config.style_hue:  # drawn only when on, so runs without it keep their batches
    s = [rotate_hue(x, 180 * config.style_hue * rng.uniform(-1, 1)) for x in s]
  return np.stack(c), np.stack(s)


def batches(contents, styles, *, start: int, stop: int, config: TrainConfig, prefetch: int = 4,
            threads: int = 2) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
  """(step, content, style) for steps start..stop-1, built on `threads` threads, `prefetch` steps ahead."""
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    pending = {}
    for step in range(start, stop):
      for ahead in range(step, min(stop, step + prefetch + 1)):
        if ahead not in pending:
          pending[ahead] = pool.submit(make_batch, contents, styles, ahead, config=config, seed=config.seed)
      c, s = pending.pop(step).result()
      yield step, c, s


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints


def save_checkpoint(path: str | os.PathLike, state: dict, *, config: TrainConfig, weights: VGGWeights,
                    history: Sequence[Mapping[str, float]] = ()) -> pathlib.Path:
  """Decoder, Adam state and step in one state file (`nst_jax.io.checkpoint`), written atomically."""
  meta = {"step": int(state["step"]), "config": dataclasses.asdict(config), "arch": weights.arch,
          "encoder_sha256": weights.source_sha256, "history": list(history)}
  arrays = {**checkpoint.flatten_tree(state["params"], "params"),
            **checkpoint.flatten_tree(state["opt_state"], "opt_state")}
  return checkpoint.write(path, kind=CHECKPOINT_FORMAT, version=CHECKPOINT_FORMAT_VERSION, arrays=arrays, meta=meta)


def load_checkpoint(path: str | os.PathLike, trainer: Trainer) -> tuple[dict, list[dict]]:
  """(state, history) from `save_checkpoint` (or the .npz of earlier versions, "leaf0000"... in flattening order),
  checked against the trainer's config and encoder."""
  where = str(path)
  if not pathlib.Path(path).is_file():
    raise NSTError(f"--resume: {where} is not a training checkpoint (no such file)")
  meta, arrays = checkpoint.read(path, what="AdaIN training checkpoint", hint="--resume takes the checkpoint.npz of a "
                                 "train_adain --out_dir")
  checkpoint.check_format(meta, path=path, kind=CHECKPOINT_FORMAT, versions=(CHECKPOINT_FORMAT_VERSION,),
                          what="AdaIN training checkpoint", legacy="num_leaves" in meta)
  for field in ("step", "config", "arch", "encoder_sha256", "history"):
    if field not in meta:
      raise NSTError(f"--resume: {where} is not a training checkpoint (its metadata has no {field!r})")
  if meta["arch"] != trainer.weights.arch or meta["encoder_sha256"] != trainer.weights.source_sha256:
    raise NSTError(f"--resume: {where} was trained with another encoder ({meta['arch']}, "
                   f"{meta['encoder_sha256'][:12]})")
  defaults = dataclasses.asdict(TrainConfig())  # keys added later are absent from older checkpoints
  for key in ("width", "crop", "batch", "lr", "lr_decay", "style_weight", "content_weight", "seed", "min_scale",
              "max_scale", "style_hue"):
    saved = meta["config"].get(key, defaults[key])
    if saved != getattr(trainer.config, key):
      raise NSTError(f"--resume: {where} has {key}={saved!r}, the flags say {getattr(trainer.config, key)!r}")
  params = adain_decoder.init_decoder(trainer.weights.arch, trainer.config.width)
  template = {"params": params, "opt_state": trainer.optimizer.init(params)}
  if "leaf0000" in arrays:  # the format before nst_jax.io.checkpoint: the (params, opt_state) leaves in order
    state = dict(zip(("params", "opt_state"), checkpoint.restore_tree(
        (template["params"], template["opt_state"]), arrays, "state", where=f"--resume: {where}")))
  else:
    state = {name: checkpoint.restore_tree(tree, arrays, name, where=f"--resume: {where}")
             for name, tree in template.items()}
  return trainer.place({**state, "step": meta["step"]}), meta["history"]


def write_metrics(out_dir: str | os.PathLike, history: Sequence[Mapping[str, float]], *, summary: Mapping) -> None:
  """metrics.json (every logged step + summary) and loss_curve.png, atomically."""
  out_dir = pathlib.Path(out_dir)
  atomic.write_json(out_dir / "metrics.json", {"summary": dict(summary), "history": list(history)})
  if not history:
    return
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  steps = [h["step"] for h in history]
  fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
  for key, label in (("loss", "total"), ("content", "content"), ("style_weighted", "style x weight")):
    ax.plot(steps, [h[key] for h in history], label=label)
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("loss (running mean)")
  ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout()
  with atomic.atomic_write(out_dir / "loss_curve.png") as f:
    fig.savefig(f, format="png")
  plt.close(fig)


def train(trainer: Trainer, contents: Sequence[np.ndarray], styles: Sequence[np.ndarray], *, out_dir: str | os.PathLike,
          resume: bool = True, checkpoint_every: int = 100, log_every: int = 10, max_seconds: float | None = None,
          init_params: Mapping[str, Any] | None = None, input_threads: int = 2,
          log: Callable[[str], None] = print) -> tuple[dict, list[dict]]:
  """Runs (or resumes) training to `config.steps`, checkpointing to out_dir/checkpoint.npz; returns the final state
  and the history of running-mean losses. Stops early (after a checkpoint) when `max_seconds` have passed. Without
  a checkpoint to resume, starts from `init_params` (a trained decoder to fine-tune) or from random. Batches are
  built on `input_threads` host threads."""
  if input_threads < 1:
    raise NSTError(f"--input_threads must be >= 1, got {input_threads}")
  out_dir = pathlib.Path(out_dir)
  ckpt_path = out_dir / "checkpoint.npz"
  config = trainer.config
  if resume and ckpt_path.exists():
    state, history = load_checkpoint(ckpt_path, trainer)
    log(f"resumed from {ckpt_path} at step {state['step']}")
  else:
    state, history = trainer.init_state(init_params), []
  start_time, start_step = time.perf_counter(), state["step"]
  window: list[dict[str, float]] = []
  for step, c, s in batches(contents, styles, start=state["step"], stop=config.steps, config=config,
                            threads=input_threads, prefetch=max(4, 2 * input_threads)):
    state, terms = trainer.step(state, *trainer.shard_batch(c, s))
    window.append(terms)
    done = step + 1
    if done % log_every == 0 or done == config.steps:
      values = {k: float(np.mean([float(t[k]) for t in window])) for k in window[0]}
      if not all(np.isfinite(v) for v in values.values()):
        raise NSTError(f"training diverged at step {done} (loss {values}); lower --lr")
      elapsed = time.perf_counter() - start_time
      history.append({"step": done, **values, "style_weighted": config.style_weight * values["style"],
                      "seconds": elapsed, "steps_per_s": (done - start_step) / elapsed})
      log(f"step {done}: loss {values['loss']:.4g} (content {values['content']:.4g}, style {values['style']:.4g}), "
          f"{(done - start_step) / elapsed:.2f} steps/s")
      window = []
    out_of_time = max_seconds is not None and time.perf_counter() - start_time > max_seconds
    if done % checkpoint_every == 0 or done == config.steps or out_of_time:
      save_checkpoint(ckpt_path, state, config=config, weights=trainer.weights, history=history)
      write_metrics(out_dir, history, summary={"step": done, "config": dataclasses.asdict(config)})
    if out_of_time:
      log(f"stopping after {max_seconds:.0f} s at step {done}")
      break
  return state, history
