"""The Flax VGG against an independent float64 NumPy implementation (and torch when installed)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax.models import vgg


random_params = vgg.random_params  # He-initialised, so activations keep their scale through 16 layers


def numpy_vgg(arch: str, params: dict, image: np.ndarray, pooling: str) -> dict[str, np.ndarray]:
  """Every layer of VGG on one (H, W, 3) image in float64: explicit 3x3 zero-padded convolution as 9 shifted
  matrix products, ReLU, 2x2 pooling by reshaping (odd sizes floored)."""
  x = image.astype(np.float64)
  out = {}
  for name in vgg.layer_names(arch):
    if name.startswith("conv"):
      k = params[name]["kernel"].astype(np.float64)
      h, w, _ = x.shape
      padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
      y = np.zeros((h, w, k.shape[-1]))
      for dy in range(3):
        for dx in range(3):
          y += padded[dy:dy + h, dx:dx + w, :] @ k[dy, dx]
      x = y + params[name]["bias"]
    elif name.startswith("relu"):
      x = np.maximum(x, 0.0)
    else:
      h, w, c = x.shape
      blocks = x[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c)
      x = blocks.max(axis=(1, 3)) if pooling == "max" else blocks.mean(axis=(1, 3))
    out[name] = x
  return out


def relative_error(a, b) -> float:
  return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / (np.max(np.abs(b)) + 1e-12))


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_matches_numpy_reference(arch, pooling):
  params = random_params(arch)
  image = np.random.default_rng(1).uniform(-1, 1, (36, 44, 3)).astype(np.float32)  # odd pooled sizes occur
  last_conv = "conv5_4" if arch == "vgg19" else "conv5_3"
  outputs = ("conv1_1", "relu1_2", "pool1", "relu2_1", "relu3_1", "relu4_2", "pool4", last_conv, "pool5")
  model = vgg.VGG(arch, outputs, pooling=pooling)
  got = model.apply({"params": params}, jnp.asarray(image)[None])
  want = numpy_vgg(arch, params, image, pooling)
  assert set(got) == set(outputs)
  for name in outputs:
    assert got[name].shape[1:] == want[name].shape, name
    assert relative_error(got[name][0], want[name]) <= 1e-4, name


def test_matches_torch_conv_stack():
  torch = pytest.importorskip("torch")
  arch = "vgg19"
  params = random_params(arch, seed=3)
  image = np.random.default_rng(4).uniform(-1, 1, (32, 40, 3)).astype(np.float32)
  x = torch.from_numpy(image.transpose(2, 0, 1)[None].copy())
  want = {}
  with torch.no_grad():
    for name in vgg.layer_names(arch):
      if name.startswith("conv"):
        k = torch.from_numpy(params[name]["kernel"].transpose(3, 2, 0, 1).copy())  # HWIO -> OIHW
        x = torch.nn.functional.conv2d(x, k, torch.from_numpy(params[name]["bias"]), padding=1)
      elif name.startswith("relu"):
        x = torch.relu(x)
      else:
        x = torch.nn.functional.avg_pool2d(x, 2)
      want[name] = x[0].numpy().transpose(1, 2, 0)
  outputs = ("relu1_1", "relu3_4", "relu5_1", "pool5")
  got = vgg.VGG(arch, outputs, pooling="avg").apply({"params": params}, jnp.asarray(image)[None])
  for name in outputs:
    assert relative_error(got[name][0], want[name]) <= 1e-4, name


def test_stops_at_deepest_requested_layer():
  params = random_params("vgg19")
  model = vgg.VGG("vgg19", ("relu2_1", "relu1_1"))
  used = vgg.params_for("vgg19", params, model.outputs)
  assert list(used) == ["conv1_1", "conv1_2", "conv2_1"]
  jaxpr = jax.make_jaxpr(lambda p, x: model.apply({"params": p}, x))(used, jnp.zeros((1, 16, 16, 3)))
  assert str(jaxpr).count("conv_general_dilated") == 3
  # The full parameter set is not needed; the subset suffices.
  out = model.apply({"params": used}, jnp.ones((1, 16, 16, 3)))
  assert set(out) == {"relu1_1", "relu2_1"}


def test_layer_names_and_shapes():
  assert len([n for n in vgg.layer_names("vgg16") if n.startswith("conv")]) == 13
  assert len([n for n in vgg.layer_names("vgg19") if n.startswith("conv")]) == 16
  assert vgg.layer_names("vgg19")[-1] == "pool5"
  assert vgg.conv_shapes("vgg19")["conv3_4"] == ((3, 3, 256, 256), (256,))
  assert vgg.deepest_layer("vgg16", ["relu4_2", "relu1_1", "pool3"]) == "relu4_2"
  with pytest.raises(ValueError, match="conv5_4"):
    vgg.check_layers("vgg16", ["conv5_4"])
  with pytest.raises(ValueError, match="vgg11"):
    vgg.layer_names("vgg11")


def test_memory_estimate_activations_scale_with_area():
  estimate = lambda side, layer="relu5_1": vgg.estimate_training_bytes("vgg19", (side, side), [layer])
  # Parameters are a constant offset; activation memory grows with the area, i.e. 4x per doubled side.
  ratio = (estimate(256) - estimate(128)) / (estimate(128) - estimate(64))
  assert 3.9 < ratio < 4.1
  assert estimate(256, "relu1_1") < estimate(256, "relu3_1") < estimate(256)


def test_precomputed_backward_kernels_give_the_same_gradients():
  """The BACKWARD_KERNELS path (custom VJP with kernels flipped once per run) equals plain autodiff, for the image
  gradient and for the parameter gradient."""
  arch = "vgg16"
  params = random_params(arch, seed=5)
  model = vgg.VGG(arch, ("relu1_2", "relu3_1"))
  used = vgg.params_for(arch, params, model.outputs)
  image = jnp.asarray(np.random.default_rng(6).uniform(-1, 1, (1, 20, 24, 3)).astype(np.float32))

  def loss(p, x, extra):
    out = model.apply({"params": p, **extra}, x)
    return sum(jnp.sum(jnp.sin(v)) for v in out.values())

  plain = jax.grad(loss, argnums=(0, 1))(used, image, {})
  fast = jax.jit(jax.grad(loss, argnums=(0, 1)))(used, image,
                                                  {vgg.BACKWARD_KERNELS: vgg.backward_kernels(used)})
  np.testing.assert_allclose(fast[1], plain[1], rtol=1e-5, atol=1e-6)
  for name in used:
    np.testing.assert_allclose(fast[0][name]["kernel"], plain[0][name]["kernel"], rtol=1e-4, atol=1e-5)


def test_normalize_activations_rescales_channels_and_preserves_the_function():
  """Gatys et al.'s normalised network: every ReLU channel has mean 1 over the reference images (unless floored),
  and each layer's output equals the original's up to one positive factor per channel."""
  arch = "vgg16"
  params = random_params(arch, seed=8)
  rng = np.random.default_rng(9)
  images = [jnp.asarray(rng.uniform(-1, 1, (1, 32, 40, 3)).astype(np.float32)) for _ in range(2)]
  normalized = vgg.normalize_activations(arch, params, images, pooling="avg")
  layers = ("relu1_1", "relu2_2", "relu3_1", "relu4_2", "relu5_3")
  model = vgg.VGG(arch, layers, pooling="avg")
  before = [model.apply({"params": params}, x) for x in images]
  after = [model.apply({"params": normalized}, x) for x in images]
  for name in layers:
    old = np.concatenate([np.asarray(b[name]).reshape(-1, b[name].shape[-1]) for b in before])
    new = np.concatenate([np.asarray(a[name]).reshape(-1, a[name].shape[-1]) for a in after])
    means = new.mean(axis=0)
    old_means = old.mean(axis=0)
    kept = old_means >= 0.1 * np.median(old_means[old_means > 0])  # channels not floored
    np.testing.assert_allclose(means[kept], 1.0, rtol=1e-3)
    active = old > 1e-3 * old.max()
    live = active.any(axis=0)  # channels that fire somewhere; dead ones have no ratio to compare
    ratio = np.where(active, new / np.where(active, old, 1.0), np.nan)[:, live]
    spread = np.nanmax(ratio, axis=0) - np.nanmin(ratio, axis=0)
    assert np.max(spread / np.nanmean(ratio, axis=0)) < 1e-3, name
