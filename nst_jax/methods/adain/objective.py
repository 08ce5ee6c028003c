"""The objectives of AdaIN training (`nst_jax.methods.adain.train`).

The paper's content and style terms, the reconstruction and distillation stages, a pixel-colour term, and the
per-image optimum of the objective that a decoder's output can be compared with.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nst_jax.errors import NSTError
from nst_jax.losses import color
from nst_jax.methods.adain import ops as adain_ops, stylize as adain
from nst_jax.models import adain_decoder, adain_student, vgg
from nst_jax.models.preprocessing import Preprocessing



def _encoder_features(enc_params, student, images, *, layers, arch: str, preprocessing: Preprocessing,
                      backward=None) -> dict[str, jax.Array]:
  """The features of the encoder that feeds the decoder: the `student`'s when given, else the teacher's."""
  if student is None:
    return adain_ops.encode(enc_params, images, arch=arch, preprocessing=preprocessing, layers=layers,
                            backward=backward)
  return adain_student.encode(student, images, preprocessing=preprocessing, layers=layers)


def _decode(dec_params, targets: Mapping[str, jax.Array], *, arch: str, width: int, padding: str,
            skip_width: int, input_scale: float) -> jax.Array:
  skips = {k: v for k, v in targets.items() if k != adain_decoder.ENCODER_LAYER} if skip_width else None
  return adain_decoder.decode(dec_params, targets[adain_decoder.ENCODER_LAYER], arch=arch, width=width, padding=padding,
                      skips=skips, skip_width=skip_width, input_scale=input_scale)


def loss_terms(dec_params, enc_params, content, style, *, arch: str, width: int, preprocessing: Preprocessing,
               style_weight: float, content_weight: float, backward=None, student=None, style_norm: str = "none",
               padding: str = "reflect", loss_net: str = "teacher", skip_width: int = 0,
               input_scale: float = 1.0, color_weight: float = 0.0,
               gram_weight: float = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The paper's training objective of a decoder: (total, {'content', 'style'[, 'color']}) for RGB [0, 1] batches.

  With t the decoder input (AdaIN of the encoder's relu4_1 features of the content to the style's statistics), f_l
  the loss network's features of the decoder's output and s_l those of the style,

    L = content_weight · mean((f_relu4_1 − t)²)
        + style_weight · sum_l [mean((mu(f_l) − mu(s_l))²) + mean((sigma(f_l) − sigma(s_l))²)]

  over relu1_1..relu4_1 (`ops.content_loss`, `ops.style_stats_loss`; `style_norm='relative'` makes each layer's term
  relative), plus `color_weight` · `color_stats_loss` and `gram_weight` · `ops.style_gram_loss` (the Gram
  matrices' relative error over the same layers, reported as 'gram'). Gradients flow only into the decoder's output.

  Args:
    dec_params, enc_params: the decoder's and the teacher VGG's parameters.
    content, style: (N, H, W, 3) RGB [0, 1] batches.
    arch, preprocessing: the teacher's architecture and input preprocessing.
    width, padding, skip_width, input_scale: the decoder's (`adain_decoder.decode`).
    style_weight, content_weight, color_weight, gram_weight: the terms' weights.
    backward: `vgg.backward_kernels` of the loss network, for cheaper input gradients.
    student: the parameters of a student encoder that feeds the decoder instead of the teacher (with
      `skip_width`, also its relu1_1..relu3_1).
    style_norm: 'none' or 'relative'.
    loss_net: 'teacher', or 'student' for the student itself as loss network (cheaper; its channels approximate a
      subset of the teacher's, `adain_student`).
  """
  enc = dict(arch=arch, preprocessing=preprocessing, backward=backward)
  layers = adain_ops.STYLE_LAYERS if skip_width else (adain_decoder.ENCODER_LAYER,)
  loss_student = student if loss_net == "student" else None
  s_feats = jax.lax.stop_gradient(_encoder_features(enc_params, loss_student, style, layers=adain_ops.STYLE_LAYERS,
                                                    **enc))
  c_in = _encoder_features(enc_params, student, content, layers=layers, **enc)
  s_in = s_feats if loss_student is student else _encoder_features(enc_params, student, style, layers=layers, **enc)
  targets = jax.lax.stop_gradient({layer: adain_ops.adain(c_in[layer], s_in[layer]) for layer in layers})
  output = _decode(dec_params, targets, arch=arch, width=width, padding=padding, skip_width=skip_width,
                   input_scale=input_scale)
  target = targets[adain_decoder.ENCODER_LAYER]
  if loss_net == "student":
    o_feats = adain_student.encode(student, output, preprocessing=preprocessing, layers=adain_ops.STYLE_LAYERS)
    terms = {"content": adain_ops.content_loss(output_feats=o_feats[adain_decoder.ENCODER_LAYER], target=target),
             "style": adain_ops.style_stats_loss(output_feats=o_feats, style_feats=s_feats,
                                             relative=style_norm == "relative")}
    if gram_weight:
      terms["gram"] = adain_ops.style_gram_loss(output_feats=o_feats, style_feats=s_feats)
  else:
    terms = output_terms(enc_params, output, target=target, style_feats=s_feats, style_norm=style_norm,
                         gram=bool(gram_weight), **enc)
  total = content_weight * terms["content"] + style_weight * terms["style"]
  if gram_weight:
    total = total + gram_weight * terms["gram"]
  if color_weight:
    terms["color"] = color_stats_loss(output=output, style=style)
    total = total + color_weight * terms["color"]
  return total, terms


def color_stats_loss(*, output: jax.Array, style: jax.Array) -> jax.Array:
  """Mean squared difference of the per-image YIQ channel means and stds of `output` and `style` (N, H, W, 3).

  AdaIN's statistics one level below relu1_1, at the pixels. For a grayscale style the I and Q stds are 0, so the
  output is pushed to gray; for a coloured one, to its palette's spread."""
  o_mean, o_std = adain_ops.feature_stats(color.rgb_to_yiq(output))
  s_mean, s_std = adain_ops.feature_stats(color.rgb_to_yiq(style))
  return jnp.mean(jnp.square(o_mean - s_mean)) + jnp.mean(jnp.square(o_std - s_std))


def output_terms(enc_params, output, *, target: jax.Array, style_feats: Mapping[str, jax.Array], arch: str,
                 preprocessing: Preprocessing, backward=None, style_norm: str = "none",
                 gram: bool = False) -> dict[str, jax.Array]:
  """{'content', 'style'[, 'gram']}: the terms of the training objective for RGB outputs (N, H, W, 3)."""
  o_feats = adain_ops.encode(enc_params, output, layers=adain_ops.STYLE_LAYERS, arch=arch, preprocessing=preprocessing,
                         backward=backward)
  terms = {"content": adain_ops.content_loss(output_feats=o_feats[adain_decoder.ENCODER_LAYER], target=target),
           "style": adain_ops.style_stats_loss(output_feats=o_feats, style_feats=style_feats,
                                               relative=style_norm == "relative")}
  if gram:
    terms["gram"] = adain_ops.style_gram_loss(output_feats=o_feats, style_feats=style_feats)
  return terms


def reconstruct_terms(dec_params, enc_params, content, *, arch: str, width: int, preprocessing: Preprocessing,
                      pixel_weight: float, content_weight: float, backward=None, student=None,
                      padding: str = "reflect", skip_width: int = 0,
                      input_scale: float = 1.0) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The reconstruction objective: (total, {'pixel', 'content'}) of the decoder at alpha = 0.

  The decoder's image of the content's own features against the content, in pixels (MSE, `pixel_weight`) and in
  the relu4_1 features of the encoder that feeds it (teacher, or `student`; `content_weight`)."""
  enc = dict(arch=arch, preprocessing=preprocessing, backward=backward)
  layers = adain_ops.STYLE_LAYERS if skip_width else (adain_decoder.ENCODER_LAYER,)
  feats = jax.lax.stop_gradient(_encoder_features(enc_params, student, content, layers=layers, **enc))
  output = _decode(dec_params, feats, arch=arch, width=width, padding=padding, skip_width=skip_width,
                   input_scale=input_scale)
  terms = {"pixel": jnp.mean(jnp.square(output - content))}
  terms["content"] = (adain_ops.content_loss(
      output_feats=_encoder_features(enc_params, student, output, layers=(adain_decoder.ENCODER_LAYER,),
                                     **enc)[adain_decoder.ENCODER_LAYER], target=feats[adain_decoder.ENCODER_LAYER])
                      if content_weight else jnp.zeros(()))
  return pixel_weight * terms["pixel"] + content_weight * terms["content"], terms


def distill_terms(student_params, enc_params, images, *, channels: Mapping[str, Sequence[int]], arch: str,
                  preprocessing: Preprocessing) -> tuple[jax.Array, dict[str, jax.Array]]:
  """(total, {'distill', layer: relative error}) of the student encoder against the teacher on `images`."""
  teacher = jax.lax.stop_gradient(adain_ops.encode(enc_params, images, layers=adain_student.LAYERS, arch=arch,
                                               preprocessing=preprocessing))
  student = adain_student.encode(student_params, images, preprocessing=preprocessing, layers=adain_student.LAYERS)
  per_layer = {layer: adain_student.distill_loss(student_feats=student, teacher_feats=teacher, channels=channels,
                                                 layers=(layer,)) for layer in adain_student.LAYERS}
  total = sum(per_layer.values())
  return total, {"distill": total, **per_layer}


@functools.partial(jax.jit, static_argnames=("arch", "preprocessing", "steps"))
def _objective_and_optimum(enc_params, content, style, output, style_weight, content_weight, learning_rate, *,
                           arch, preprocessing, steps):
  enc = dict(arch=arch, preprocessing=preprocessing)
  s_feats = adain_ops.encode(enc_params, style, layers=adain_ops.STYLE_LAYERS, **enc)
  layer = adain_decoder.ENCODER_LAYER
  target = adain_ops.adain(adain_ops.encode(enc_params, content, **enc)[layer], s_feats[layer])
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
  """The training objective's terms for a stylised `output`, and the image that minimises that objective directly.

  The optimised image (Adam on the pixels for `steps` steps from the content, projected onto [0, 1]) is what the
  objective asks of a decoder for this one pair; the gap between the two shows how much of it the decoder has
  learned (the paper's section 7.1 compares AdaIN's training losses with Gatys et al.'s optimisation; here the
  optimisation is of that objective itself). Images are (H, W, 3) in [0, 1]; `output` has the content's shape.

  Returns:
    (the output's terms, the optimised image, its terms), each terms {'content', 'style', 'objective'}.
  """
  if model.student_width:
    raise NSTError("objective_optimum measures with the VGG encoder: give a model made from the VGG weights")
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
