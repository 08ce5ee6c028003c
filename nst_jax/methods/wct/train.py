"""Training the WCT decoders for reconstruction (Li et al. 2017, section 3), one resumable run per level.

Objective of the decoder of level l (relu_b_1), for an image x with features f = enc_l(x):

  L = pixel_weight * mean((dec(f) - x)^2) + feature_weight * mean((enc_l(dec(f)) - f)^2) / mean(f^2),

the pixel term in RGB [0, 1] units and the feature term relative to the features' mean square, so one weight
means the same at every level. With `stylized_weight` > 0 the decoder also learns to invert the features it is
given at transfer time: each photo i of the batch is transformed with painting i (t = WCT(f_photo, f_painting),
`nst_jax.methods.wct.ops`), and

  L += stylized_weight * mean((enc_l(dec(t)) - t)^2) / mean(t^2).

With `upsampling` "unpool" the decoders are PhotoWCT's (`nst_jax.models.wct_decoder`): each decodes with the
pooling switches of the image it is given the features of (for t, the photo's).

Such t lie off the features of natural images (the painting's covariance on the photo's layout); a decoder trained
only on reconstruction inverts them loosely, and whatever it misses is style statistics lost in the picture.
Batches are random crops of the content photos and of the paintings alike (the decoder must invert features of
both), made by `nst_jax.io.training_images` as a pure function of (seed, step).
The step is one `jax.jit` over a `Mesh` of all devices, the batch sharded along its first axis, parameters and
Adam state replicated. The checkpoint (format "nst_jax-wct-training": parameters, Adam state, step, config,
the decoder's input scale, history) is written atomically; resuming from it gives the same next steps as an
uninterrupted run.
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
from nst_jax.io import training_images
from nst_jax.methods.wct import ops as wct_ops
from nst_jax.models import layers, vgg, wct_decoder
from nst_jax.models.preprocessing import Preprocessing

CHECKPOINT_FORMAT = "nst_jax-wct-training"
CHECKPOINT_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """One level's reconstruction training.

  Attributes:
    layer: the level, relu1_1 ... relu5_1.
    width: decoder width (64: the encoder's channel counts).
    padding: the decoder's convolution padding.
    crop: side of the square training crops (a multiple of the level's stride).
    batch: photos per step, and as many paintings.
    steps: length of the run (the cosine schedule ends there).
    lr: peak learning rate of Adam (linear warm-up over 2% of `steps`, cosine decay to 1%).
    pixel_weight, feature_weight: weights of the two reconstruction terms (module docstring).
    stylized_weight: weight of the inversion of WCT-transformed features (module docstring; 0: reconstruction only).
    seed: seeds the initial parameters and every batch.
    min_scale, max_scale: crops are taken from the image scaled so its short side is crop * U(min, max).
    upsampling: the decoder's, 'nearest' (WCT) or 'unpool' (PhotoWCT)."""

  layer: str = "relu4_1"
  width: int = 32
  padding: str = "reflect"
  crop: int = 128
  batch: int = 4
  steps: int = 4000
  lr: float = 1e-3
  pixel_weight: float = 1.0
  feature_weight: float = 1.0
  stylized_weight: float = 0.0
  seed: int = 0
  min_scale: float = 1.0
  max_scale: float = 2.0
  style_hue: float = 0.0  # the batch maker's augmentations of the second half of the batch: none here
  gray_styles: float = 0.0
  upsampling: str = "nearest"

  def __post_init__(self) -> None:
    if self.layer not in wct_decoder.LEVELS:
      raise NSTError(f"--layer must be one of {', '.join(wct_decoder.LEVELS)}, got {self.layer!r}")
    stride = 2 ** (int(self.layer[4]) - 1)
    if self.crop < 16 or self.crop % max(stride, 8):
      raise NSTError(f"--crop must be a multiple of {max(stride, 8)} and at least 16, got {self.crop}")
    if self.width < 1 or self.batch < 1 or self.steps < 0 or not self.lr > 0:
      raise NSTError(f"--width, --batch, --lr must be positive and --steps >= 0, got {self.width}, {self.batch}, "
                     f"{self.lr}, {self.steps}")
    if self.upsampling not in wct_decoder.UPSAMPLINGS:
      raise NSTError(f"--upsampling must be one of {wct_decoder.UPSAMPLINGS}, got {self.upsampling!r}")
    if self.padding not in layers.PADDINGS:
      raise NSTError(f"--padding must be one of {layers.PADDINGS}, got {self.padding!r}")
    if self.pixel_weight < 0 or self.feature_weight < 0 or self.pixel_weight + self.feature_weight <= 0:
      raise NSTError(f"--pixel_weight and --feature_weight must be >= 0, not both 0; got {self.pixel_weight}, "
                     f"{self.feature_weight}")
    if not self.stylized_weight >= 0:
      raise NSTError(f"--stylized_weight must be >= 0, got {self.stylized_weight}")
    if not 0 < self.min_scale <= self.max_scale:
      raise NSTError(f"scales must satisfy 0 < min <= max, got {self.min_scale}, {self.max_scale}")


DEFAULT_CONFIG = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def learning_rate(config: TrainConfig) -> optax.Schedule:
  """Linear warm-up over 2% of the steps, then cosine decay to 1% of `config.lr`."""
  warmup = max(1, config.steps // 50)
  return optax.warmup_cosine_decay_schedule(0.0, config.lr, warmup, max(warmup + 1, config.steps),
                                            end_value=config.lr * 0.01)


def encode(enc_params: Mapping, images: jax.Array, *, arch: str, preprocessing: Preprocessing, layer: str,
           backward: Mapping | None = None) -> jax.Array:
  """The encoder's features at `layer` of RGB [0, 1] images (N, H, W, 3), under the weights' preprocessing."""
  variables = {"params": enc_params}
  if backward is not None:
    variables[vgg.BACKWARD_KERNELS] = backward
  return vgg.VGG(arch, (layer,), pooling="max").apply(variables, preprocessing.apply(images))[layer]


def encode_with_switches(enc_params: Mapping, images: jax.Array, *, arch: str, preprocessing: Preprocessing,
                         layer: str) -> tuple[jax.Array, dict[str, jax.Array]]:
  """`encode`'s features and the switches of every max pooling before `layer` (`vgg.features_and_switches`)."""
  return vgg.features_and_switches({"params": enc_params}, preprocessing.apply(images), arch=arch, layer=layer)


def reconstruction_terms(dec_params: Mapping, enc_params: Mapping, images: jax.Array, *, arch: str,
                         preprocessing: Preprocessing, config: TrainConfig, input_scale: float,
                         backward: Mapping | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The module docstring's (loss, {"pixel", "feature"[, "stylized"]}) for a batch of RGB [0, 1] images.

  The batch holds the photos first, then as many paintings; `input_scale` multiplies the decoder's input."""
  kw = dict(arch=arch, preprocessing=preprocessing, layer=config.layer)
  if config.upsampling == "unpool":
    feats, switches = jax.lax.stop_gradient(encode_with_switches(enc_params, images, **kw))
  else:
    feats, switches = jax.lax.stop_gradient(encode(enc_params, images, **kw)), {}
  level = wct_decoder.LevelDecoder(dec_params, config.width, config.padding, input_scale,
                                   upsampling=config.upsampling)
  out = wct_decoder.decode(level, feats, arch=arch, layer=config.layer, switches=switches)
  pixel = jnp.mean(jnp.square(out - images))
  terms = {"pixel": pixel}
  loss = config.pixel_weight * pixel
  if config.feature_weight:
    again = encode(enc_params, out, backward=backward, **kw)
    terms["feature"] = jnp.mean(jnp.square(again - feats)) / (jnp.mean(jnp.square(feats)) + 1e-12)
    loss = loss + config.feature_weight * terms["feature"]
  if config.stylized_weight:
    n = images.shape[0] // 2
    targets = jax.lax.stop_gradient(
        jax.vmap(lambda c, s: wct_ops.wct_pair(c, s))(feats[:n], feats[n:2 * n]))
    styled = wct_decoder.decode(level, targets, arch=arch, layer=config.layer,
                                switches={k: v[:n] for k, v in switches.items()})
    again = encode(enc_params, styled, backward=backward, **kw)
    terms["stylized"] = jnp.mean(jnp.square(again - targets)) / (jnp.mean(jnp.square(targets)) + 1e-12)
    loss = loss + config.stylized_weight * terms["stylized"]
  return loss, terms


def input_scale_for(enc_params: Mapping, images: np.ndarray, *, arch: str, preprocessing: Preprocessing,
                    layer: str) -> float:
  """1 / RMS of the encoder's features at `layer` over `images`: the decoder's input scale."""
  feats = encode(enc_params, jnp.asarray(images), arch=arch, preprocessing=preprocessing, layer=layer)
  return float(1.0 / np.sqrt(np.mean(np.square(np.asarray(feats))) + 1e-12))


@dataclasses.dataclass
class Trainer:
  """The mesh, the encoder and the one compiled step of a level's training."""

  config: TrainConfig
  arch: str
  encoder_sha256: str
  preprocessing: Preprocessing
  mesh: Mesh
  enc_params: Any
  backward: Any
  optimizer: optax.GradientTransformation
  input_scale: float
  step_fn: Callable

  def fresh_state(self) -> dict:
    """Step 0: fresh decoder parameters and Adam moments, placed on the mesh."""
    params = wct_decoder.init_decoder(self.arch, self.config.layer, self.config.width, seed=self.config.seed)
    return self.place({"params": params, "opt_state": self.optimizer.init(params), "step": 0})

  def place(self, state: dict) -> dict:
    """`state` (parameters, Adam state, step) placed on the mesh, replicated."""
    replicated = NamedSharding(self.mesh, P())
    return {"params": jax.device_put(state["params"], replicated),
            "opt_state": jax.device_put(state["opt_state"], replicated), "step": int(state["step"])}

  def step(self, state: dict, images: np.ndarray) -> tuple[dict, dict[str, jax.Array]]:
    """One training step on a batch of images (sharded here): (the next state, {term: value})."""
    batch = jax.device_put(images, NamedSharding(self.mesh, P("data")))
    params, opt_state, terms = self.step_fn(state["params"], state["opt_state"], self.enc_params, self.backward,
                                            batch)
    return {"params": params, "opt_state": opt_state, "step": state["step"] + 1}, terms


def first_batch(contents: Sequence[np.ndarray], styles: Sequence[np.ndarray], config: TrainConfig) -> np.ndarray:
  """The images of step 0: photos then paintings."""
  c, s = training_images.make_batch(contents, styles, 0, config=config, seed=config.seed)
  return np.concatenate([c, s])


def make_trainer(config: TrainConfig, *, arch: str, params: Mapping, preprocessing: Preprocessing,
                 encoder_sha256: str, input_scale: float, devices: Sequence[jax.Device] | None = None) -> Trainer:
  """The trainer of `config` for the encoder (`arch`, `params`, `preprocessing`) and a fixed decoder input scale."""
  devices = list(devices if devices is not None else jax.devices())
  if (2 * config.batch) % len(devices):
    raise NSTError(f"2 x --batch ({2 * config.batch}) must be a multiple of the number of devices ({len(devices)})")
  mesh = Mesh(np.array(devices), ("data",))
  replicated, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  enc_params = jax.device_put(vgg.params_for(arch, dict(params), (config.layer,)), replicated)
  backward = jax.device_put(vgg.backward_kernels(enc_params), replicated)
  optimizer = optax.adam(learning_rate(config))

  def train_step(dec_params, opt_state, enc, bwd, images):
    (loss, terms), grads = jax.value_and_grad(
        lambda p: reconstruction_terms(p, enc, images, arch=arch, preprocessing=preprocessing, config=config,
                                       input_scale=input_scale, backward=bwd), has_aux=True)(dec_params)
    updates, opt_state = optimizer.update(grads, opt_state, dec_params)
    return optax.apply_updates(dec_params, updates), opt_state, {"loss": loss, **terms}

  step_fn = jax.jit(train_step, in_shardings=(replicated,) * 4 + (data,), out_shardings=(replicated,) * 3,
                    donate_argnums=(0, 1))
  return Trainer(config, arch, encoder_sha256, preprocessing, mesh, enc_params, backward, optimizer, input_scale,
                 step_fn)


def save_checkpoint(path: str | os.PathLike, trainer: Trainer, state: dict,
                    history: Sequence[Mapping] = ()) -> pathlib.Path:
  """Parameters, Adam state and step in one state file (`nst_jax.io.checkpoint`), written atomically."""
  meta = {"step": int(state["step"]), "config": dataclasses.asdict(trainer.config), "arch": trainer.arch,
          "encoder_sha256": trainer.encoder_sha256, "input_scale": trainer.input_scale, "history": list(history)}
  arrays = {**checkpoint.flatten_tree(state["params"], "params"),
            **checkpoint.flatten_tree(state["opt_state"], "opt_state")}
  return checkpoint.write(path, kind=CHECKPOINT_FORMAT, version=CHECKPOINT_FORMAT_VERSION, arrays=arrays, meta=meta)


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
  """The metadata of a training checkpoint (config, step, input scale, history), checked for its kind."""
  meta, _ = checkpoint.read(path, what="WCT training checkpoint")
  checkpoint.check_format(meta, path=path, kind=CHECKPOINT_FORMAT, versions=(CHECKPOINT_FORMAT_VERSION,),
                          what="WCT training checkpoint")
  return meta


def load_checkpoint(path: str | os.PathLike, trainer: Trainer) -> tuple[dict, list[dict]]:
  """(state, history) of `save_checkpoint`, checked against the trainer's config, encoder and input scale."""
  where = str(path)
  meta, arrays = checkpoint.read(path, what="WCT training checkpoint")
  checkpoint.check_format(meta, path=path, kind=CHECKPOINT_FORMAT, versions=(CHECKPOINT_FORMAT_VERSION,),
                          what="WCT training checkpoint")
  if meta.get("arch") != trainer.arch or meta.get("encoder_sha256") != trainer.encoder_sha256:
    raise NSTError(f"{where}: trained with another encoder ({meta.get('arch')}, {str(meta.get('encoder_sha256'))[:12]})")
  saved = {**DEFAULT_CONFIG, **meta.get("config", {})}  # fields added later take their defaults
  for key, value in dataclasses.asdict(trainer.config).items():
    if saved.get(key) != value:
      raise NSTError(f"{where}: the checkpoint has {key}={saved.get(key)!r}, the flags say {value!r}")
  if meta.get("input_scale") != trainer.input_scale:
    raise NSTError(f"{where}: the checkpoint's input scale {meta.get('input_scale')!r} is not the trainer's")
  template = trainer.fresh_state()
  state = {name: checkpoint.restore_tree(jax.device_get(template[name]), arrays, name, where=where)
           for name in ("params", "opt_state")}
  return trainer.place({**state, "step": meta["step"]}), list(meta.get("history", []))


def train(trainer: Trainer, contents: Sequence[np.ndarray], styles: Sequence[np.ndarray], *,
          out_dir: str | os.PathLike, stop: int | None = None, checkpoint_every: int = 50, log_every: int = 10,
          max_seconds: float | None = None, evaluate: Callable[[dict], dict] | None = None, eval_every: int = 0,
          log: Callable[[str], None] = print) -> tuple[dict, list[dict]]:
  """Runs or resumes (from out_dir/checkpoint.npz) the training up to step `stop` (default `config.steps`).

  Checkpoints every `checkpoint_every` steps, at the end and when `max_seconds` have passed. History entries hold
  running means of the loss terms and, every `eval_every` steps, `evaluate(params)` (held-out numbers). Returns
  (the final state, the history)."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  ckpt = out_dir / "checkpoint.npz"
  config = trainer.config
  stop = config.steps if stop is None else min(stop, config.steps)
  if ckpt.exists():
    state, history = load_checkpoint(ckpt, trainer)
    log(f"resumed {config.layer} from {ckpt} at step {state['step']}")
  else:
    state, history = trainer.fresh_state(), []
  start, start_step = time.perf_counter(), state["step"]
  window: list[dict] = []
  for step, c, s in training_images.batches(contents, styles, start=state["step"], stop=stop, config=config):
    state, terms = trainer.step(state, np.concatenate([c, s]))
    window.append(terms)
    done = step + 1
    if done % log_every == 0 or done == stop:
      values = {k: float(np.mean([float(t[k]) for t in window])) for k in window[0]}
      if not all(np.isfinite(v) for v in values.values()):
        raise NSTError(f"{config.layer}: training diverged at step {done} ({values}); lower --lr")
      rate = (done - start_step) / (time.perf_counter() - start)
      history.append({"step": done, **values, "steps_per_s": rate})
      log(f"{config.layer} step {done}: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items())
          + f", {rate:.3f} steps/s")
      window = []
    if evaluate is not None and eval_every and done % eval_every == 0:
      history.append({"step": done, "eval": evaluate(jax.device_get(state["params"]))})
      log(f"{config.layer} step {done}: held-out {history[-1]['eval']}")
    out_of_time = max_seconds is not None and time.perf_counter() - start > max_seconds
    if done % checkpoint_every == 0 or done == stop or out_of_time:
      save_checkpoint(ckpt, trainer, state, history)
      atomic.write_json(out_dir / "metrics.json", {"config": dataclasses.asdict(config), "history": history})
    if out_of_time:
      log(f"{config.layer}: stopping after {max_seconds:.0f} s at step {done}")
      break
  return state, history
