"""Training the AdaIN decoder (Huang & Belongie 2017, section 6): data-parallel jitted steps and exact resume.

- Stages (`TrainConfig.stage`): 'adain' (the paper's objective), 'reconstruct' (the decoder inverts the encoder:
  pixel and relu4_1 losses at alpha = 0, a cheap pre-training) and 'distill' (a small student encoder,
  `nst_jax.models.adain_student`, learns the teacher's relu1_1..relu4_1). With `encoder_width` > 0 a frozen student
  encoder feeds the decoder while the teacher VGG stays the loss network.
- Optimiser: Adam with the paper's inverse-time decay, lr_t = lr / (1 + decay * t) (lr 1e-4, decay 5e-5), or a
  warm-up + cosine schedule; optionally an exponential moving average of the parameters (exported instead).
- Step: one `jax.jit` over a `Mesh` of all devices; the content and style batches are sharded along the batch axis
  (`NamedSharding(mesh, P("data"))`), decoder/encoder parameters and optimiser state replicated. The loss is a
  mean over the global batch, so the result does not depend on the number of devices (up to summation order).
- Input (`nst_jax.io.training_images`): an `ImagePool` decodes images on first use (capped at `max_side` px) and
  keeps them up to a memory budget, so folders of the paper's size fit; every batch is made on a thread pool from
  its own generator seeded by (seed, step) -- random scale, crop, flip -- and kept `prefetch` steps ahead, so the
  device does not wait on decoding and batch k is the same whether or not the run was resumed.
- Checkpoint: one state file of `nst_jax.io.checkpoint` (format "nst_jax-adain-training": trained parameters, Adam
  state, moving average, step, config) written atomically; resuming from it gives bit-identical next steps.
  Checkpoints from before that format (arrays "leaf0000"...) still resume.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from nst_jax.errors import NSTError
from nst_jax.io import atomic, checkpoint
from nst_jax.io.training_images import batches
from nst_jax.methods.adain import ops as adain_ops
from nst_jax.methods.adain.objective import distill_terms, loss_terms, reconstruct_terms
from nst_jax.models import adain_decoder, adain_student, vgg
from nst_jax.weights.format import VGGWeights

CHECKPOINT_FORMAT = "nst_jax-adain-training"
CHECKPOINT_FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.npz"  # in the run's folder


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything that defines a training run; a checkpoint stores it and resuming checks it."""

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
  stage: str = "adain"  # or "reconstruct", "distill" (module docstring)
  encoder_width: int = 0  # > 0: a frozen student encoder of this width feeds the decoder (0: the teacher VGG)
  pixel_weight: float = 0.0  # reconstruct: weight of the pixel MSE (content_weight weighs the relu4_1 MSE)
  style_norm: str = "none"  # "relative": each layer's style loss over the style's mean-square statistics
  schedule: str = "inverse_time"  # or "cosine": linear warm-up over 2% of `steps`, cosine decay to 1% at `steps`
  ema: float = 0.0  # decay of an exponential moving average of the parameters (0: off)
  gray_styles: float = 0.0  # probability that a style crop is turned gray (its luma in all three channels)
  decoder_padding: str = "reflect"  # or "zero" (adain_decoder.Decoder)
  loss_net: str = "teacher"  # or "student": the frozen student encoder is also the loss network (cheap)
  skips: bool = False  # the decoder also takes AdaIN of relu1_1..relu3_1 (adain_decoder.decoder_shapes)
  input_scale: float = 1.0  # the decoder multiplies its inputs by this (adain_decoder.Decoder)
  color_weight: float = 0.0  # weight of `color_stats_loss` (the output's YIQ channel means/stds against the style's)
  gram_weight: float = 0.0  # weight of `ops.style_gram_loss` (the Gram matrices' relative error, relu1_1..relu4_1)

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
    if self.stage not in STAGES or self.style_norm not in STYLE_NORMS or self.schedule not in SCHEDULES:
      raise NSTError(f"--stage, --style_norm, --schedule must be one of {STAGES}, {STYLE_NORMS}, {SCHEDULES}; got "
                     f"{self.stage!r}, {self.style_norm!r}, {self.schedule!r}")
    if self.gram_weight < 0:
      raise NSTError(f"--gram_weight must be >= 0, got {self.gram_weight}")
    if self.encoder_width < 0 or self.pixel_weight < 0 or not 0 <= self.ema < 1 or not 0 <= self.gray_styles <= 1:
      raise NSTError(f"--encoder_width, --pixel_weight >= 0, --ema in [0, 1), --gray_styles in [0, 1]; got "
                     f"{self.encoder_width}, {self.pixel_weight}, {self.ema}, {self.gray_styles}")
    if self.decoder_padding not in adain_decoder.PADDINGS:
      raise NSTError(f"--decoder_padding must be one of {adain_decoder.PADDINGS}, got {self.decoder_padding!r}")
    if self.loss_net not in ("teacher", "student") or (self.loss_net == "student" and not self.encoder_width):
      raise NSTError(f"--loss_net must be teacher, or student with --encoder_width > 0; got {self.loss_net!r}")
    if self.stage == "distill" and self.encoder_width == 0:
      raise NSTError("--stage distill trains a student encoder: give --encoder_width")


STAGES = ("adain", "reconstruct", "distill")
STYLE_NORMS = ("none", "relative")
SCHEDULES = ("inverse_time", "cosine")


def skip_width(config: TrainConfig) -> int:
  """The decoder's skip width: 0 without skips, else the width of the encoder that feeds it (64: the VGG)."""
  return (config.encoder_width or 64) if config.skips else 0


def learning_rate(config: TrainConfig) -> optax.Schedule:
  """The schedule: lr / (1 + decay * step) (the paper's code), or warm-up + cosine to 1% of lr at `steps`."""
  if config.schedule == "cosine":
    warmup = max(1, config.steps // 50)
    return optax.warmup_cosine_decay_schedule(0.0, config.lr, warmup, max(warmup + 1, config.steps),
                                              end_value=config.lr * 0.01)
  return lambda step: config.lr / (1.0 + config.lr_decay * step)


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
  """Adam with `learning_rate(config)`."""
  return optax.adam(learning_rate(config))


@dataclasses.dataclass
class Trainer:
  """Holds the mesh, the shardings and the one compiled step of `config.stage`."""

  config: TrainConfig
  weights: VGGWeights
  mesh: Mesh
  step_fn: Callable
  enc_params: Any
  backward: Any
  optimizer: optax.GradientTransformation
  student: adain_student.Student | None = None  # distill: its start; otherwise the frozen encoder (width > 0)

  @property
  def data_sharding(self) -> NamedSharding:
    """Batches split along their first axis over the mesh's 'data' axis."""
    return NamedSharding(self.mesh, P("data"))

  @property
  def replicated(self) -> NamedSharding:
    """Arrays replicated on every device of the mesh (parameters, optimiser state)."""
    return NamedSharding(self.mesh, P())

  def fresh_params(self) -> dict:
    """The trainable parameters at step 0 without --init_decoder: the pruned student (distill), else random."""
    if self.config.stage == "distill":
      return {k: np.asarray(v, np.float32) for k, v in self.student.params.items()}
    return adain_decoder.init_decoder(self.weights.arch, self.config.width, seed=self.config.seed,
                              skip_width=skip_width(self.config))

  def init_state(self, params: Mapping[str, Any] | None = None) -> dict:
    """Step 0 with fresh Adam moments: fresh parameters, or `params` (fine-tuning a trained decoder)."""
    fresh = self.fresh_params()
    if params is None:
      params = fresh
    elif {k: np.shape(v) for k, v in params.items()} != {k: np.shape(v) for k, v in fresh.items()}:
      raise NSTError(f"--init_decoder: its arrays do not fit a width-{self.config.width} {self.weights.arch} decoder")
    else:
      params = {k: np.asarray(v, np.float32) for k, v in params.items()}
    ema = params if self.config.ema else {}
    return self.place({"params": params, "opt_state": self.optimizer.init(params), "step": 0, "ema": ema})

  def place(self, state: dict) -> dict:
    """`state` (parameters, Adam state, moving average, step) placed on the mesh, replicated."""
    return {"params": jax.device_put(state["params"], self.replicated),
            "opt_state": jax.device_put(state["opt_state"], self.replicated), "step": int(state["step"]),
            "ema": jax.device_put(state.get("ema", {}), self.replicated)}

  def shard_batch(self, content: np.ndarray, style: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """The content and style batches sharded along the batch axis."""
    return jax.device_put(content, self.data_sharding), jax.device_put(style, self.data_sharding)

  def step(self, state: dict, content, style) -> tuple[dict, dict[str, float]]:
    """One training step of `state` on a sharded batch: (the next state, {term: value} of this step)."""
    frozen = self.student.params if self.student is not None and self.config.stage != "distill" else None
    params, opt_state, ema, terms = self.step_fn(state["params"], state["opt_state"], state["ema"], self.enc_params,
                                                 self.backward, frozen, content, style)
    return {"params": params, "opt_state": opt_state, "step": state["step"] + 1, "ema": ema}, terms

  def export_params(self, state: dict) -> dict:
    """What a run exports: the moving average of the parameters when kept, else the parameters."""
    return jax.device_get(state["ema"] if self.config.ema else state["params"])


def make_trainer(config: TrainConfig, weights: VGGWeights, devices: Sequence[jax.Device] | None = None, *,
                 student: adain_student.Student | None = None) -> Trainer:
  """The trainer of `config.stage`, its step compiled once.

  `student` is the encoder to distil (its pruned start) or, with `config.encoder_width` > 0, the frozen student
  encoder that feeds the decoder."""
  devices = list(devices if devices is not None else jax.devices())
  if config.batch % len(devices):
    raise NSTError(f"--batch {config.batch} must be a multiple of the number of devices ({len(devices)})")
  if (student is None) != (config.encoder_width == 0) or (student and student.width != config.encoder_width):
    raise NSTError(f"--encoder_width {config.encoder_width} needs a student encoder of that width "
                   f"(got {'none' if student is None else student.width})")
  mesh = Mesh(np.array(devices), ("data",))
  optimizer = make_optimizer(config)
  replicated, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  enc_params = jax.device_put(vgg.params_for(weights.arch, weights.params, adain_ops.STYLE_LAYERS), replicated)
  backward = jax.device_put(vgg.backward_kernels(enc_params), replicated)
  if student is not None:
    student = dataclasses.replace(student, params=jax.device_put(student.params, replicated))
  common = dict(arch=weights.arch, preprocessing=weights.preprocessing)

  def objective(params, enc, bwd, frozen, content, style):
    if config.stage == "distill":
      return distill_terms(params, enc, jnp.concatenate([content, style]), channels=student.channels, **common)
    if config.stage == "reconstruct":
      return reconstruct_terms(params, enc, content, width=config.width, pixel_weight=config.pixel_weight,
                               content_weight=config.content_weight, backward=bwd, student=frozen,
                               padding=config.decoder_padding, skip_width=skip_width(config),
                               input_scale=config.input_scale, **common)
    return loss_terms(params, enc, content, style, width=config.width, style_weight=config.style_weight,
                      content_weight=config.content_weight, backward=bwd, student=frozen,
                      style_norm=config.style_norm, padding=config.decoder_padding, loss_net=config.loss_net,
                      skip_width=skip_width(config), input_scale=config.input_scale,
                      color_weight=config.color_weight, gram_weight=config.gram_weight, **common)

  def train_step(params, opt_state, ema, enc, bwd, frozen, content, style):
    (loss, terms), grads = jax.value_and_grad(
        lambda p: objective(p, enc, bwd, frozen, content, style), has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    if config.ema:
      ema = jax.tree_util.tree_map(lambda e, p: config.ema * e + (1.0 - config.ema) * p, ema, params)
    return params, opt_state, ema, {"loss": loss, **terms, "grad_norm": optax.tree.norm(grads)}

  step_fn = jax.jit(train_step, in_shardings=(replicated,) * 6 + (data, data),
                    out_shardings=(replicated,) * 4, donate_argnums=(0, 1, 2))
  return Trainer(config, weights, mesh, step_fn, enc_params, backward, optimizer, student)


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints


def save_checkpoint(path: str | os.PathLike, state: dict, *, config: TrainConfig, weights: VGGWeights,
                    history: Sequence[Mapping[str, float]] = ()) -> pathlib.Path:
  """Writes the training state in one state file (`nst_jax.io.checkpoint`), atomically.

  Trained parameters, Adam state, moving average (if kept), step, config, the encoder's identity and `history`."""
  meta = {"step": int(state["step"]), "config": dataclasses.asdict(config), "arch": weights.arch,
          "encoder_sha256": weights.source_sha256, "history": list(history)}
  arrays = {**checkpoint.flatten_tree(state["params"], "params"),
            **checkpoint.flatten_tree(state["opt_state"], "opt_state"),
            **checkpoint.flatten_tree(state["ema"], "ema")}
  return checkpoint.write(path, kind=CHECKPOINT_FORMAT, version=CHECKPOINT_FORMAT_VERSION, arrays=arrays, meta=meta)


def load_checkpoint(path: str | os.PathLike, trainer: Trainer) -> tuple[dict, list[dict]]:
  """(state, history) from `save_checkpoint`'s file, checked against the trainer's config and encoder.

  The .npz of earlier versions ("leaf0000"... in flattening order) loads too."""
  where = str(path)
  if not pathlib.Path(path).is_file():
    raise NSTError(f"--resume: {where} is not a training checkpoint (no such file)")
  meta, arrays = checkpoint.read(path, what="AdaIN training checkpoint", hint="--resume takes the checkpoint.npz of a "
                                 "`train adain` --out_dir")
  checkpoint.check_format(meta, path=path, kind=CHECKPOINT_FORMAT, versions=(CHECKPOINT_FORMAT_VERSION,),
                          what="AdaIN training checkpoint", legacy="num_leaves" in meta)
  for field in ("step", "config", "arch", "encoder_sha256", "history"):
    if field not in meta:
      raise NSTError(f"--resume: {where} is not a training checkpoint (its metadata has no {field!r})")
  if meta["arch"] != trainer.weights.arch or meta["encoder_sha256"] != trainer.weights.source_sha256:
    raise NSTError(f"--resume: {where} was trained with another encoder ({meta['arch']}, "
                   f"{meta['encoder_sha256'][:12]})")
  defaults = dataclasses.asdict(TrainConfig())  # keys added later are absent from older checkpoints
  keys = ["width", "crop", "batch", "lr", "lr_decay", "style_weight", "content_weight", "seed", "min_scale",
          "max_scale", "style_hue", "stage", "encoder_width", "pixel_weight", "style_norm", "schedule", "ema",
          "gray_styles", "decoder_padding", "loss_net", "skips", "input_scale", "color_weight", "gram_weight"]
  for key in keys + (["steps"] if trainer.config.schedule == "cosine" else []):  # the cosine ends at `steps`
    saved = meta["config"].get(key, defaults[key])
    if saved != getattr(trainer.config, key):
      raise NSTError(f"--resume: {where} has {key}={saved!r}, the flags say {getattr(trainer.config, key)!r}")
  params = trainer.fresh_params()
  template = {"params": params, "opt_state": trainer.optimizer.init(params),
              "ema": params if trainer.config.ema else {}}
  if "leaf0000" in arrays:  # the format before nst_jax.io.checkpoint: the (params, opt_state, ema) leaves in order
    state = dict(zip(template, checkpoint.restore_tree(tuple(template.values()), arrays, "state",
                                                       where=f"--resume: {where}")))
  else:
    state = {name: checkpoint.restore_tree(tree, arrays, name, where=f"--resume: {where}")
             for name, tree in template.items()}
  return trainer.place({**state, "step": meta["step"]}), meta["history"]


def write_metrics(out_dir: str | os.PathLike, history: Sequence[Mapping[str, float]], *, summary: Mapping) -> None:
  """Writes metrics.json (every logged step + `summary`) and loss_curve.png to `out_dir`, atomically."""
  out_dir = pathlib.Path(out_dir)
  atomic.write_json(out_dir / "metrics.json", {"summary": dict(summary), "history": list(history)})
  if not any("loss" in h for h in history):
    return
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  history = [h for h in history if "loss" in h]  # not the held-out evaluations
  steps = [h["step"] for h in history]
  fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
  for key, label in (("loss", "total"), ("content", "content"), ("style_weighted", "style x weight"),
                     ("pixel", "pixel"), ("distill", "distill")):
    if key in history[-1]:
      ax.plot(steps, [h.get(key, np.nan) for h in history], label=label)
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
          log: Callable[[str], None] = print, evaluate: Callable[[dict], dict] | None = None,
          eval_every: int = 0) -> tuple[dict, list[dict]]:
  """Runs (or resumes) training to `config.steps`, checkpointing to out_dir/checkpoint.npz.

  Without a checkpoint to resume, starts from `init_params` (a trained decoder to fine-tune) or from random. Every
  history entry holds running-mean losses, the images seen and the process CPU seconds summed over resumed runs.

  Args:
    trainer: `make_trainer`'s.
    contents, styles: the training images (`nst_jax.io.training_images.ImagePool` or arrays).
    out_dir: checkpoint.npz, metrics.json and loss_curve.png go here.
    resume: resume from out_dir/checkpoint.npz when it exists.
    checkpoint_every, log_every: in steps.
    max_seconds: stop early (after a checkpoint) once this much time has passed.
    init_params: the decoder parameters to start from (fresh Adam moments).
    input_threads: host threads that build the batches.
    log: receives the progress lines.
    evaluate, eval_every: every `eval_every` steps `evaluate(exported parameters)` adds an 'eval' entry (a learning
      curve on held-out images).

  Returns:
    (the final state, the history).
  """
  if input_threads < 1:
    raise NSTError(f"--input_threads must be >= 1, got {input_threads}")
  out_dir = pathlib.Path(out_dir)
  ckpt_path = out_dir / CHECKPOINT_NAME
  config = trainer.config
  if resume and ckpt_path.exists():
    state, history = load_checkpoint(ckpt_path, trainer)
    log(f"resumed from {ckpt_path} at step {state['step']}")
  else:
    state, history = trainer.init_state(init_params), []
  start_time, start_step = time.perf_counter(), state["step"]
  start_cpu, cpu_before = time.process_time(), (history[-1].get("cpu_s", 0.0) if history else 0.0)
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
      history.append({"step": done, **values, "style_weighted": config.style_weight * values.get("style", 0.0),
                      "seconds": elapsed, "steps_per_s": (done - start_step) / elapsed, "images": done * config.batch,
                      "cpu_s": cpu_before + time.process_time() - start_cpu})
      terms_text = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if k not in ("loss", "grad_norm"))
      log(f"step {done}: loss {values['loss']:.4g} ({terms_text}), {(done - start_step) / elapsed:.2f} steps/s")
      window = []
    if evaluate is not None and eval_every and (done % eval_every == 0 or done == config.steps):
      record = {"step": done, "images": done * config.batch, "cpu_s": cpu_before + time.process_time() - start_cpu,
                "eval": evaluate(trainer.export_params(state))}
      history.append(record)
      log(f"step {done}: held-out {record['eval']}")
    out_of_time = max_seconds is not None and time.perf_counter() - start_time > max_seconds
    if done % checkpoint_every == 0 or done == config.steps or out_of_time:
      save_checkpoint(ckpt_path, state, config=config, weights=trainer.weights, history=history)
      write_metrics(out_dir, history, summary={"step": done, "config": dataclasses.asdict(config)})
    if out_of_time:
      log(f"stopping after {max_seconds:.0f} s at step {done}")
      break
  return state, history
