"""AdaIN decoder training (nst_jax.methods.adain.train): the input pipeline, the loss falls, the objective's
optimum, exact resume from checkpoints of this and the previous format, fine-tuning, 8 devices = 1 device.

The encoder is a random VGG16 with Caffe preprocessing and the decoders are tiny (width 4-8), so everything runs
at 32-64 px on a CPU in well under a minute.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adain_helpers import decoder_checkpoint
from nst_jax.errors import NSTError
from nst_jax.io import image_io, training_images
from nst_jax.methods.adain import (objective as adain_objective, ops as adain_ops, stylize as adain,
                                   train as adain_train)
from nst_jax.models import adain_decoder

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(encoder):
  return adain.make_model(encoder, decoder_checkpoint(encoder, width=8, seed=3))


TINY = adain_train.TrainConfig(crop=32, batch=2, steps=0, lr=1e-3, width=4, seed=0)


@pytest.fixture(scope="module")
def trainer(encoder):
  return adain_train.make_trainer(TINY, encoder)


@pytest.fixture(scope="module")
def pools(content):
  img = (content * 255).astype(np.uint8)
  return [img, img[::-1]], [img[:, ::-1], (255 - img)]


def _run(trainer, state, pools, start, stop):
  losses = []
  for _, c, s in training_images.batches(*pools, start=start, stop=stop, config=trainer.config):
    state, terms = trainer.step(state, *trainer.shard_batch(c, s))
    losses.append(float(terms["loss"]))
  return state, losses


def test_image_pool_decodes_on_demand_within_its_budget_and_skips_bad_files(content, tmp_path, monkeypatch):
  from PIL import Image  # pylint: disable=import-outside-toplevel
  img = (content * 255).astype(np.uint8)
  paths = [tmp_path / name for name in ("a.png", "b.jpg", "c.png", "d.jpg", "e.png")]
  Image.fromarray(img).save(paths[0])
  paths[1].write_text("not an image")  # no image header: left out at construction
  Image.fromarray(np.kron(img, np.ones((2, 2, 1), np.uint8))).save(paths[2])  # 128 px: capped at 48
  Image.fromarray(img[::-1]).save(tmp_path / "full.jpg", quality=95)
  full = (tmp_path / "full.jpg").read_bytes()
  paths[3].write_bytes(full[:len(full) // 2])  # a header, then truncated data
  Image.fromarray(255 - img).save(paths[4])
  logged = []
  eager = [training_images.to_uint8(image_io.load_image(p), 48)
           for p in (paths[0], paths[2], paths[4])]
  one_image = max(x.nbytes for x in eager)
  decoded, load_image = {}, image_io.load_image

  def counting_load_image(path, **kw):
    decoded[path.name] = decoded.get(path.name, 0) + 1
    return load_image(path, **kw)

  monkeypatch.setattr(image_io, "load_image", counting_load_image)
  pool = training_images.ImagePool(paths + [content], max_side=48, cache_bytes=one_image, log=logged.append)
  assert len(pool) == 5 and len(logged) == 1 and "b.jpg" in logged[0] and "not an image file" in logged[0]
  assert pool.cached_bytes == 0  # nothing decoded yet
  for _ in range(2):  # the second pass decodes again what the budget did not keep
    np.testing.assert_array_equal(pool[0], eager[0])
    np.testing.assert_array_equal(pool[1], eager[1])
    np.testing.assert_array_equal(pool[2], eager[2])  # d.jpg is truncated: replaced by the next image, e.png
    np.testing.assert_array_equal(pool[3], eager[2])
    np.testing.assert_array_equal(pool[4], training_images.to_uint8(content, 48))
  # a.png stays cached (the budget holds one image), c.png and e.png are decoded on every use, d.jpg is tried twice
  # (a second chance for a flaky file system) and then never again, e.png standing in for it.
  assert decoded == {"a.png": 1, "c.png": 2, "d.jpg": 2, "e.png": 4}, decoded
  assert max(pool[1].shape[:2]) == 48
  assert 0 < pool.cached_bytes <= one_image
  assert len(logged) == 2 and "d.jpg" in logged[1]  # the broken file is reported once
  listed = [pool[i] for i in range(len(pool))]
  threaded = training_images.batches(pool, pool, start=0, stop=6, config=TINY, threads=4)
  serial = training_images.batches(listed, listed, start=0, stop=6, config=TINY, threads=1)
  for (step_a, *a), (step_b, *b) in zip(threaded, serial, strict=True):
    assert step_a == step_b
    np.testing.assert_array_equal(a, b)
  assert pool.cached_bytes <= one_image
  with pytest.raises(NSTError, match="no readable training images"):
    training_images.ImagePool([paths[1]], max_side=48, log=logged.append)


def test_batches_are_a_function_of_seed_and_step(pools):
  a = training_images.make_batch(*pools, 5, config=TINY, seed=0)
  b = list(training_images.batches(*pools, start=4, stop=6, config=TINY))[1]
  assert b[0] == 5
  np.testing.assert_array_equal(a[0], b[1])
  np.testing.assert_array_equal(a[1], b[2])
  assert a[0].shape == (2, 32, 32, 3) and a[0].dtype == np.float32 and 0 <= a[0].min() and a[0].max() <= 1
  assert not np.array_equal(a[0], training_images.make_batch(*pools, 6, config=TINY, seed=0)[0])


def test_hue_rotation_keeps_grey_level_and_chroma_and_permutes_at_120_degrees():
  x = np.random.default_rng(0).uniform(0.3, 0.7, (8, 8, 3)).astype(np.float32)  # no clipping for any angle
  np.testing.assert_allclose(training_images.rotate_hue(x, 0), x, atol=1e-6)
  np.testing.assert_allclose(training_images.rotate_hue(x, 360), x, atol=1e-6)
  np.testing.assert_allclose(training_images.rotate_hue(x, 120), x[..., [2, 0, 1]], atol=1e-6)  # r -> g -> b -> r
  y = training_images.rotate_hue(x, 73)
  np.testing.assert_allclose(y.mean(-1), x.mean(-1), atol=1e-6)
  chroma = lambda im: np.linalg.norm(im - im.mean(-1, keepdims=True), axis=-1)  # noqa: E731
  np.testing.assert_allclose(chroma(y), chroma(x), atol=1e-6)
  assert np.abs(y - x).max() > 0.05


def test_style_hue_recolours_only_the_style_crops(pools):
  plain = training_images.make_batch(*pools, 3, config=TINY, seed=0)
  hued = training_images.make_batch(*pools, 3, config=dataclasses.replace(TINY, style_hue=1.0), seed=0)
  np.testing.assert_array_equal(hued[0], plain[0])
  assert hued[1].shape == plain[1].shape and 0 <= hued[1].min() and hued[1].max() <= 1
  assert np.abs(hued[1] - plain[1]).max() > 0.05
  np.testing.assert_allclose(hued[1].mean(-1), plain[1].mean(-1), atol=0.1)  # grey level kept but for clipping
  with pytest.raises(NSTError, match="style_hue"):
    dataclasses.replace(TINY, style_hue=2.0)


def test_training_lowers_the_loss(trainer, pools):
  state = trainer.init_state()
  c, s = training_images.make_batch(*pools, 0, config=TINY, seed=0)
  losses = []
  for _ in range(8):  # one fixed batch: the loss must fall
    state, terms = trainer.step(state, *trainer.shard_batch(c, s))
    losses.append(float(terms["loss"]))
  assert losses[-1] < 0.5 * losses[0], losses


def test_objective_optimum_beats_the_decoder_and_the_content(model, content):
  """Per-image optimisation of the training objective: the terms it reports for an output equal the losses computed
  from that output's features, and the optimised image lowers the objective far below an untrained decoder's
  output and the style loss far below the content's own."""
  style = content[::-1, ::-1] ** 2  # darker, flipped: different channel statistics
  output = adain.stylize(content, [style], model=model)
  out_terms, optimum, opt_terms = adain_objective.objective_optimum(model, content, style, output, style_weight=10.0,
                                                                steps=80, learning_rate=0.02)
  feats = {name: adain_ops.encode(model.enc_params, jnp.asarray(x)[None], arch=model.arch,
                             preprocessing=model.preprocessing, layers=adain_ops.STYLE_LAYERS)
           for name, x in (("content", content), ("style", style), ("output", output))}
  target = adain_ops.adain(feats["content"][adain_decoder.ENCODER_LAYER], feats["style"][adain_decoder.ENCODER_LAYER])
  np.testing.assert_allclose(out_terms["style"], adain_ops.style_stats_loss(output_feats=feats["output"],
                                                                      style_feats=feats["style"]), rtol=1e-4)
  np.testing.assert_allclose(out_terms["content"], adain_ops.content_loss(
      output_feats=feats["output"][adain_decoder.ENCODER_LAYER], target=target), rtol=1e-4)
  assert optimum.shape == content.shape and optimum.min() >= 0.0 and optimum.max() <= 1.0
  np.testing.assert_allclose(out_terms["objective"], out_terms["content"] + 10.0 * out_terms["style"], rtol=1e-5)
  assert opt_terms["objective"] < 0.05 * out_terms["objective"], (opt_terms, out_terms)
  content_style = float(adain_ops.style_stats_loss(output_feats=feats["content"], style_feats=feats["style"]))
  assert opt_terms["style"] < 0.2 * content_style, (opt_terms, content_style)
  with pytest.raises(NSTError, match="differs from the content"):
    adain_objective.objective_optimum(model, content, style, output[:32], style_weight=1.0)


def test_checkpoint_resume_gives_identical_next_steps(trainer, pools, tmp_path):
  state, _ = _run(trainer, trainer.init_state(), pools, 0, 2)
  path = adain_train.save_checkpoint(tmp_path / "ckpt.npz", state, config=TINY, weights=trainer.weights)
  straight, straight_losses = _run(trainer, state, pools, 2, 4)
  resumed, history = adain_train.load_checkpoint(path, trainer)
  assert resumed["step"] == 2 and history == []
  resumed, resumed_losses = _run(trainer, resumed, pools, 2, 4)
  assert resumed_losses == straight_losses
  for a, b in zip(jax.tree_util.tree_leaves(straight), jax.tree_util.tree_leaves(resumed)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  other = adain_train.make_trainer(adain_train.TrainConfig(crop=32, batch=2, lr=1e-3, width=8), trainer.weights)
  with pytest.raises(NSTError, match="--resume.*width=4"):
    adain_train.load_checkpoint(path, other)

  moved = adain_train.make_trainer(dataclasses.replace(TINY, max_scale=4.0), trainer.weights)
  with pytest.raises(NSTError, match="--resume.*max_scale=2.0"):  # crops at another scale: not the same run
    adain_train.load_checkpoint(path, moved)
  hued = adain_train.make_trainer(dataclasses.replace(TINY, style_hue=0.5), trainer.weights)
  with pytest.raises(NSTError, match="--resume.*style_hue=0.0"):
    adain_train.load_checkpoint(path, hued)


def test_checkpoint_of_the_previous_format_still_resumes(trainer, pools, tmp_path):
  """A checkpoint written before `nst_jax.io.checkpoint` (meta without "format", arrays leaf0000... in the flattening
  order of (params, opt_state)) resumes to the same next steps as the current format."""
  state, _ = _run(trainer, trainer.init_state(), pools, 0, 2)
  leaves = jax.tree_util.tree_leaves(jax.device_get((state["params"], state["opt_state"])))
  meta = {"step": 2, "config": dataclasses.asdict(TINY), "arch": trainer.weights.arch,
          "encoder_sha256": trainer.weights.source_sha256, "num_leaves": len(leaves), "history": []}
  np.savez(tmp_path / "old.npz", __meta__=np.array(json.dumps(meta)),
           **{f"leaf{i:04d}": np.asarray(v) for i, v in enumerate(leaves)})
  current = adain_train.save_checkpoint(tmp_path / "new.npz", state, config=TINY, weights=trainer.weights)
  with np.load(current) as npz:
    assert json.loads(str(npz["__meta__"]))["format"] == "nst_jax-adain-training"
    assert any(k.startswith("params/dec4_1/") for k in npz.files) and any(k.startswith("opt_state/") for k in npz.files)
  runs = [_run(trainer, adain_train.load_checkpoint(path, trainer)[0], pools, 2, 3)
          for path in (tmp_path / "old.npz", current)]
  assert runs[0][1] == runs[1][1]
  for a, b in zip(jax.tree_util.tree_leaves(runs[0][0]), jax.tree_util.tree_leaves(runs[1][0])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_fine_tuning_starts_from_the_given_decoder_with_fresh_adam(trainer, pools, tmp_path):
  trained, _ = _run(trainer, trainer.init_state(), pools, 0, 3)
  params = jax.device_get(trained["params"])
  tuned = trainer.init_state(params)
  assert tuned["step"] == 0
  for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(tuned["params"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert all(not np.any(np.asarray(m)) for m in jax.tree_util.tree_leaves(tuned["opt_state"][0].mu))
  # The first step's loss is that of the given decoder, not of a random one.
  c, s = training_images.make_batch(*pools, 3, config=TINY, seed=0)
  _, from_trained = trainer.step(trained, *trainer.shard_batch(c, s))
  _, from_tuned = trainer.step(tuned, *trainer.shard_batch(c, s))
  _, from_random = trainer.step(trainer.init_state(), *trainer.shard_batch(c, s))
  assert float(from_tuned["loss"]) == float(from_trained["loss"]) != float(from_random["loss"])
  # train() uses init_params only when there is no checkpoint to resume.
  state, _ = adain_train.train(trainer, *pools, out_dir=tmp_path, init_params=params, log=lambda _: None)
  assert state["step"] == 0
  np.testing.assert_array_equal(np.asarray(state["params"]["dec1_1/kernel"]), params["dec1_1/kernel"])
  wider = {k: np.zeros(np.shape(v)[:-1] + (np.shape(v)[-1] + 1,), np.float32) for k, v in params.items()}
  with pytest.raises(NSTError, match="--init_decoder.*width-4"):
    trainer.init_state(wider)


_MULTI_DEVICE = textwrap.dedent("""
  import json, sys
  import jax, numpy as np
  from nst_jax.methods.adain import train as adain_train
  from nst_jax.models import adain_decoder
  from nst_jax.models import vgg
  from nst_jax.models.preprocessing import CAFFE_VGG
  from nst_jax.weights.format import VGGWeights
  assert len(jax.devices()) == 8, jax.devices()
  w = VGGWeights("vgg16", vgg.random_params("vgg16", seed=1), CAFFE_VGG, "random", "ab" * 32)
  config = adain_train.TrainConfig(crop=32, batch=8, lr=1e-4, width=4)
  rng = np.random.default_rng(0)
  batches = [(rng.random((8, 32, 32, 3), np.float32), rng.random((8, 32, 32, 3), np.float32)) for _ in range(2)]
  out = {}
  for n in (1, 8):
    t = adain_train.make_trainer(config, w, devices=jax.devices()[:n])
    state = t.init_state()
    losses, norms = [], []
    for c, s in batches:
      state, terms = t.step(state, *t.shard_batch(c, s))
      losses.append(float(terms["loss"]))
      norms.append(float(terms["grad_norm"]))
    shards = len(state["params"]["dec1_1/kernel"].sharding.device_set)
    out[n] = {"losses": losses, "norms": norms, "devices": shards,
              "params": np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(state["params"])]).tolist()}
  json.dump(out, sys.stdout)
""")


@pytest.mark.slow
def test_eight_simulated_devices_equal_one(tmp_path):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", _MULTI_DEVICE], cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout)
  assert out["8"]["devices"] == 8 and out["1"]["devices"] == 1
  one, eight = out["1"], out["8"]
  # The same step-1 loss and gradient (different summation order only)...
  np.testing.assert_allclose(eight["losses"][0], one["losses"][0], rtol=1e-5)
  np.testing.assert_allclose(eight["norms"][0], one["norms"][0], rtol=1e-3)  # measured 2.5e-4
  # ... but Adam's first update is ~lr * sign(g), so gradient components near zero whose sign depends on the
  # summation order move by up to 2 lr in opposite directions: parameters agree to 2 lr per step, and on average
  # to a small fraction of how far they moved. Step 2's gradient is taken at those slightly different parameters
  # (its norm differed by 0.25%, on main as well), so it is compared at 1e-2.
  np.testing.assert_allclose(eight["losses"][1], one["losses"][1], rtol=1e-3)
  np.testing.assert_allclose(eight["norms"][1], one["norms"][1], rtol=1e-2)
  init = np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(adain_decoder.init_decoder("vgg16", 4))])
  p1, p8 = np.asarray(one["params"]), np.asarray(eight["params"])
  assert np.abs(p8 - p1).max() <= 4 * 1e-4 * 1.01
  assert np.abs(p8 - p1).mean() < 0.05 * np.abs(p1 - init).mean(), (np.abs(p8 - p1).mean(), np.abs(p1 - init).mean())
