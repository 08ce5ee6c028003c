"""One AdaIN training run as `python -m nst_jax train adain` drives it.

The student encoder that the run trains or that feeds its decoder, the held-out learning curve, and the exported
decoder (or student) file. The step, the checkpoints and the input pipeline are `train`'s; this module joins them
with the model files.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np

from nst_jax.errors import NSTError
from nst_jax.io.training_images import random_crop
from nst_jax.methods.adain import evaluation as adain_eval, stylize as adain, train as adain_train
from nst_jax.models import adain_decoder, adain_student
from nst_jax.weights.adain_decoders import resolve_decoder
from nst_jax.weights.format import VGGWeights

PRUNED_STUDENT = "student_init.npz"  # distill's start in the run's folder, kept for resuming


def student_for(config: adain_train.TrainConfig, weights: VGGWeights, *, student_file: str | None,
                init: adain_decoder.DecoderCheckpoint | None, contents: Sequence, styles: Sequence,
                out_dir: str | os.PathLike) -> adain_student.Student | None:
  """The student encoder of a run, or None when the teacher feeds the decoder.

  From `student_file` (a student file, or a decoder file that holds one), from the `init` decoder's file, or
  (distill) the teacher pruned to `config.encoder_width` on 32 sample crops of `contents` and `styles`."""
  if config.encoder_width == 0:
    return None
  pruned = pathlib.Path(out_dir) / PRUNED_STUDENT
  if student_file:
    try:
      student = adain_student.load_student(student_file)
    except NSTError:
      student = resolve_decoder(student_file).student
    if student is None:
      raise NSTError(f"--student {student_file!r} holds no student encoder")
  elif init is not None and init.student is not None:
    student = init.student
  elif config.stage == "distill" and pruned.is_file():
    student = adain_student.load_student(pruned)
  elif config.stage == "distill":
    rng = np.random.default_rng(config.seed)
    sample = [random_crop(pool[int(rng.integers(len(pool)))], rng, crop=128, min_scale=1.0, max_scale=3.0)
              for pool in (contents, styles) for _ in range(16)]
    params, channels = adain_student.prune_teacher(weights.params, np.stack(sample), width=config.encoder_width,
                                                   preprocessing=weights.preprocessing)
    student = adain_student.Student(params, config.encoder_width, channels, weights.arch, weights.source_sha256,
                                    {"init": "pruned teacher (32 sample crops)"}, weights.preprocessing)
    pruned.parent.mkdir(parents=True, exist_ok=True)
    adain_student.save_student(pruned, student)
  else:
    raise NSTError("--encoder_width > 0 needs --student (or an --init_decoder that holds a student encoder)")
  if student.teacher_sha256 != weights.source_sha256:
    raise NSTError("--student was distilled from other --weights")
  return student


def decoder_checkpoint(trainer: adain_train.Trainer, params: Mapping, *, student: adain_student.Student | None,
                       info: dict | None = None) -> adain_decoder.DecoderCheckpoint:
  """The decoder file's contents for `params` trained by `trainer`, fed by `student` (None: the teacher)."""
  config, weights = trainer.config, trainer.weights
  return adain_decoder.DecoderCheckpoint(
      params=params, arch=weights.arch, width=config.width, encoder_sha256=weights.source_sha256,
      encoder_source=weights.source, info=info or {}, padding=config.decoder_padding,
      skip_width=adain_train.skip_width(config), input_scale=config.input_scale, student=student)


def curve_evaluator(trainer: adain_train.Trainer, data: pathlib.Path, *, size: int
                    ) -> Callable[[Mapping], dict] | None:
  """A function params -> learning-curve summary on the `evaluation.CURVE_*` images, at long side `size`.

  None without the shared `data` folder."""
  if not (data / "train" / "photos").is_dir():
    return None
  contents, styles = adain_eval.load_holdout(data, photos=adain_eval.CURVE_PHOTOS,
                                             paintings=adain_eval.CURVE_PAINTINGS, extra=())
  teacher = adain_eval.Teacher.from_weights(trainer.weights)

  def evaluate(params):
    model = adain.make_model(trainer.weights, decoder_checkpoint(trainer, params, student=trainer.student))
    stylize = lambda c, s, alpha: adain.stylize(c, [s], model=model, alpha=alpha)  # noqa: E731
    return adain_eval.evaluate(stylize, teacher, contents, styles, size=size)["summary"]

  return evaluate


def export(path: str | os.PathLike, trainer: adain_train.Trainer, state: dict, *, info: dict) -> None:
  """Writes the trained parameters of `state`: a student file for a distill run, else a decoder file."""
  params = trainer.export_params(state)
  if trainer.config.stage == "distill":
    adain_student.save_student(path, dataclasses.replace(trainer.student, params=params, info=info))
  else:
    student = trainer.student
    student = None if student is None else dataclasses.replace(student, params=jax.device_get(student.params))
    adain_decoder.save_decoder(path, decoder_checkpoint(trainer, params, student=student, info=info))
