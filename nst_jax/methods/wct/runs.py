"""Training all WCT decoders as one resumable background job, and exporting them as one shipped file.

`train_levels` trains the levels round-robin, each for at most `chunk_seconds` at a time, so that every level has a
usable checkpoint early and a job stopped anywhere loses at most one chunk: rerunning the same call resumes every
level from its own `out_dir/<level>/checkpoint.npz`. `export` gathers the levels' current parameters, measures each
level's reconstruction PSNR on held-out images and writes the decoder file (`nst_jax.models.wct_decoder`) with
every level's lineage.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.methods.adain import evaluation as adain_eval
from nst_jax.methods.wct import train as wct_train
from nst_jax.models import adain_decoder, wct_decoder
from nst_jax.weights.format import VGGWeights

# Steps per level (the cosine schedule of each ends there): the deep levels invert more and cost more per step.
DEFAULT_STEPS = {"relu1_1": 800, "relu2_1": 1500, "relu3_1": 2000, "relu4_1": 3000, "relu5_1": 3000}


def level_dir(out_dir: str | pathlib.Path, layer: str) -> pathlib.Path:
  """The checkpoint folder of one level in the run's folder."""
  return pathlib.Path(out_dir) / layer


def make_level_trainer(config: wct_train.TrainConfig, weights: VGGWeights, out_dir: str | pathlib.Path,
                       contents: Sequence[np.ndarray], styles: Sequence[np.ndarray]) -> wct_train.Trainer:
  """The trainer of one level, its decoder input scale kept across resumes.

  The scale comes from the level's checkpoint if there is one, else from the batch of step 0."""
  ckpt = level_dir(out_dir, config.layer) / "checkpoint.npz"
  if ckpt.exists():
    scale = float(wct_train.read_checkpoint_meta(ckpt)["input_scale"])
  else:
    scale = wct_train.input_scale_for(weights.params, wct_train.first_batch(contents, styles, config),
                                      arch=weights.arch, preprocessing=weights.preprocessing, layer=config.layer)
  return wct_train.make_trainer(config, arch=weights.arch, params=weights.params,
                                preprocessing=weights.preprocessing, encoder_sha256=weights.source_sha256,
                                input_scale=scale)


def seed_from_decoders(config: wct_train.TrainConfig, weights: VGGWeights, out_dir: str | pathlib.Path,
                       decoders: wct_decoder.DecoderSet, *, log: Callable[[str], None] = print) -> None:
  """Writes a level's first checkpoint from an exported decoder file, unless the level has a checkpoint.

  Its parameters, its input scale and the step it was exported at, with fresh Adam moments (the moments are not
  exported, so this continues the run approximately; a checkpoint.npz continues it exactly). A decoder with
  another upsampling than `config`'s (nearest-upsampling WCT decoders starting unpooling ones: the same parameter
  shapes) starts a new run at step 0, unless the level never upsamples (relu1_1: the same network either way)."""
  ckpt = level_dir(out_dir, config.layer) / "checkpoint.npz"
  level = decoders.levels.get(config.layer)
  if ckpt.exists() or level is None:
    return
  same = level.upsampling == config.upsampling or not wct_decoder.upsample_after(weights.arch, config.layer)
  step = int(level.info.get("step", 0)) if same else 0
  trainer = wct_train.make_trainer(config, arch=weights.arch, params=weights.params,
                                   preprocessing=weights.preprocessing, encoder_sha256=weights.source_sha256,
                                   input_scale=level.input_scale)
  params = {k: np.asarray(v, np.float32) for k, v in level.params.items()}
  state = trainer.place({"params": params, "opt_state": trainer.optimizer.init(params), "step": step})
  ckpt.parent.mkdir(parents=True, exist_ok=True)
  wct_train.save_checkpoint(ckpt, trainer, state)
  log(f"{config.layer}: starting from the exported {level.upsampling} decoder at step {step} (fresh Adam moments)")


def train_levels(configs: Sequence[wct_train.TrainConfig], weights: VGGWeights, contents: Sequence[np.ndarray],
                 styles: Sequence[np.ndarray], *, out_dir: str | pathlib.Path, chunk_seconds: float = 600.0,
                 init: wct_decoder.DecoderSet | None = None, log: Callable[[str], None] = print) -> None:
  """Trains every level of `configs` to its `steps`, round-robin in chunks of `chunk_seconds`, resuming each.

  A level without a checkpoint starts from `init`'s decoder of that level when given (`seed_from_decoders`)."""
  if init is not None:
    for config in configs:
      seed_from_decoders(config, weights, out_dir, init, log=log)
  trainers = {c.layer: make_level_trainer(c, weights, out_dir, contents, styles) for c in configs}

  def step_of(layer: str) -> int:
    ckpt = level_dir(out_dir, layer) / "checkpoint.npz"
    return int(wct_train.read_checkpoint_meta(ckpt)["step"]) if ckpt.exists() else 0

  while True:
    pending = [c for c in configs if step_of(c.layer) < c.steps]
    if not pending:
      log("every level has reached its steps")
      return
    for config in pending:
      wct_train.train(trainers[config.layer], contents, styles, out_dir=level_dir(out_dir, config.layer),
                      max_seconds=chunk_seconds, log=log)


def reconstruction_psnr(level: wct_decoder.LevelDecoder, layer: str, weights: VGGWeights,
                        images: Mapping[str, np.ndarray]) -> dict[str, float]:
  """{image name: PSNR of the level's reconstruction}; each image is cropped to a multiple of the level's stride."""
  stride = 2 ** (int(layer[4]) - 1)
  enc = jax.device_put(level_encoder_params(weights, layer))

  @jax.jit
  def roundtrip(enc_params, dec_params, image):
    feats, switches = wct_train.encode_with_switches(enc_params, image, arch=weights.arch,
                                                     preprocessing=weights.preprocessing, layer=layer)
    return wct_decoder.decode(dataclasses.replace(level, params=dec_params), feats, arch=weights.arch, layer=layer,
                              switches=switches)

  out = {}
  for name, image in images.items():
    h, w = (image.shape[0] // stride) * stride, (image.shape[1] // stride) * stride
    crop = np.asarray(image[:h, :w], np.float32)
    recon = np.asarray(roundtrip(enc, level.params, jnp.asarray(crop[None])))[0]
    out[name] = adain_eval.psnr(np.clip(recon, 0, 1), crop)
  return out


def level_encoder_params(weights: VGGWeights, layer: str) -> dict:
  """The encoder's convolutions up to `layer`, the only ones that level's training runs."""
  return {k: v for k, v in weights.params.items() if k in wct_decoder.encoder_convs(weights.arch, layer)}


def export(out_dir: str | pathlib.Path, layers: Sequence[str], weights: VGGWeights, path: str | pathlib.Path, *,
           holdout: Mapping[str, np.ndarray], info: Mapping | None = None,
           log: Callable[[str], None] = print) -> wct_decoder.DecoderSet:
  """Writes the decoder file of `layers` from their training checkpoints under `out_dir`; returns the set.

  Each level's info holds its config, step, last losses and held-out PSNR (mean and per image, on `holdout`)."""
  levels = {}
  for layer in layers:
    ckpt = level_dir(out_dir, layer) / "checkpoint.npz"
    meta = wct_train.read_checkpoint_meta(ckpt)
    config = wct_train.TrainConfig(**meta["config"])
    _, arrays = wct_train.checkpoint.read(ckpt, what="WCT training checkpoint")
    params = {k[len("params/"):]: np.asarray(v, np.float32) for k, v in arrays.items() if k.startswith("params/")}
    level = wct_decoder.LevelDecoder(params, config.width, config.padding, float(meta["input_scale"]),
                                     upsampling=config.upsampling)
    scores = reconstruction_psnr(level, layer, weights, holdout)
    losses = [h for h in meta["history"] if "loss" in h]
    level.info = {"config": meta["config"], "step": meta["step"], "last_losses": losses[-1] if losses else {},
                  "holdout_psnr_mean": float(np.mean(list(scores.values()))), "holdout_psnr": scores}
    log(f"{layer}: step {meta['step']}, held-out PSNR {level.info['holdout_psnr_mean']:.2f} dB")
    levels[layer] = level
  decoders = wct_decoder.DecoderSet(levels, weights.arch, weights.source_sha256, weights.source, dict(info or {}))
  wct_decoder.save_decoders(path, decoders)
  return decoders


def as_adain_decoder(decoders: wct_decoder.DecoderSet, layer: str = "relu4_1") -> adain_decoder.DecoderCheckpoint:
  """The relu4_1 reconstruction decoder as an AdaIN decoder file's contents.

  The same network (the encoder's mirror up to relu4_1, no skips), so it can start an AdaIN training
  (`python -m nst_jax train adain --init_decoder`) from a decoder that already inverts the encoder instead of from
  random."""
  if layer != adain_decoder.ENCODER_LAYER:
    raise ValueError(f"AdaIN decodes {adain_decoder.ENCODER_LAYER}, not {layer}")
  level = decoders.levels[layer]
  if level.upsampling != "nearest":
    raise ValueError(f"the {layer} decoder unpools; AdaIN's decoder upsamples by nearest neighbour")
  return adain_decoder.DecoderCheckpoint(
      params=dict(level.params), arch=decoders.arch, width=level.width, encoder_sha256=decoders.encoder_sha256,
      encoder_source=decoders.encoder_source, info={"from": f"WCT reconstruction decoder {layer}", **level.info},
      padding=level.padding, input_scale=level.input_scale)
