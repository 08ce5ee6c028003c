"""VGG16 / VGG19 feature stacks in Flax Linen, with the standard layer names.

The model maps a *preprocessed* NHWC batch to a dict of the requested activations. Preprocessing (channel order,
input range, mean/std) belongs to the weight source and lives with the weights
(`nst_jax.models.preprocessing.Preprocessing`), not here. Nothing past the deepest requested layer is computed (or
even needs parameters). Tiles of `nst_jax.highres` pass per-stride validity maps so that a window computes what
the whole image's network computes.

Optimising an image differentiates through every convolution with respect to its input, which is a convolution
with the kernel flipped and its in/out channels swapped. Left to autodiff, XLA:CPU re-lays-out every kernel that
way on every evaluation (a strided transpose); passing
`backward_kernels(params)` as the `BACKWARD_KERNELS` variable collection makes the convolutions use those,
computed once per run. Forward values and gradients are the same either way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Arch = Literal["vgg16", "vgg19"]

# Convolutions per block; every conv is 3x3, stride 1, padding 1, followed by ReLU; every block ends in a 2x2 pool.
_BLOCK_CONVS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
_BLOCK_WIDTHS = (64, 128, 256, 512, 512)
ARCHS: tuple[str, ...] = tuple(_BLOCK_CONVS)


def layer_names(arch: str) -> tuple[str, ...]:
  """All layer names of `arch` in forward order: conv1_1, relu1_1, ..., pool5."""
  _check_arch(arch)
  names = []
  for block, num_convs in enumerate(_BLOCK_CONVS[arch], start=1):
    for i in range(1, num_convs + 1):
      names += [f"conv{block}_{i}", f"relu{block}_{i}"]
    names.append(f"pool{block}")
  return tuple(names)


def conv_shapes(arch: str) -> dict[str, tuple[tuple[int, int, int, int], tuple[int]]]:
  """{conv name: (kernel shape HWIO, bias shape)} for every convolution of `arch`, in forward order."""
  _check_arch(arch)
  shapes = {}
  in_ch = 3
  for block, (num_convs, width) in enumerate(zip(_BLOCK_CONVS[arch], _BLOCK_WIDTHS), start=1):
    for i in range(1, num_convs + 1):
      shapes[f"conv{block}_{i}"] = ((3, 3, in_ch, width), (width,))
      in_ch = width
  return shapes


def _check_arch(arch: str) -> None:
  if arch not in _BLOCK_CONVS:
    raise ValueError(f"unknown VGG architecture {arch!r}; expected one of {', '.join(ARCHS)}")


def check_layers(arch: str, layers: Sequence[str]) -> None:
  """Raises ValueError naming the first layer that `arch` does not have."""
  known = layer_names(arch)
  for name in layers:
    if name not in known:
      raise ValueError(f"{arch} has no layer {name!r}; layers are {', '.join(known)}")


def deepest_layer(arch: str, layers: Sequence[str]) -> str:
  """The requested layer that comes last in the forward order."""
  check_layers(arch, layers)
  order = layer_names(arch)
  return max(layers, key=order.index)


def receptive_radius(arch: str, layer: str) -> int:
  """Half the theoretical receptive field (in input pixels) of one unit of `layer`, rounded up."""
  check_layers(arch, [layer])
  size, jump = 1, 1
  for name in layer_names(arch):
    if name.startswith("conv"):
      size += 2 * jump
    elif name.startswith("pool"):
      size += jump
      jump *= 2
    if name == layer:
      break
  return math.ceil((size - 1) / 2)


def layer_stride(arch: str, layer: str) -> int:
  """Input pixels per feature cell at `layer`: 2 ** (pools before it)."""
  order = layer_names(arch)
  return 2 ** sum(1 for name in order[: order.index(layer) + 1] if name.startswith("pool"))


def strides_upto(arch: str, layers: Sequence[str]) -> tuple[int, ...]:
  """Every stride from 1 up to that of the deepest of `layers`: 1, 2, 4, ..."""
  return tuple(2 ** i for i in range(int(math.log2(layer_stride(arch, deepest_layer(arch, layers)))) + 1))


def conv_before(arch: str, layer: str) -> str:
  """The last convolution at or before `layer`."""
  order = layer_names(arch)
  return [n for n in order[: order.index(layer) + 1] if n.startswith("conv")][-1]


def activation_values(arch: str, shape: tuple[int, int], layers: Sequence[str]) -> tuple[int, int]:
  """(sum, largest) of the activation sizes (values) of a forward pass over an (H, W) input.

  Up to the deepest of `layers`, the input included."""
  h, w = shape
  order = layer_names(arch)
  widths = {name: shape[1][0] for name, shape in conv_shapes(arch).items()}
  channels, sizes = 3, [h * w * 3]
  for name in order[: order.index(deepest_layer(arch, layers)) + 1]:
    if name.startswith("conv"):
      channels = widths[name]
    elif name.startswith("pool"):
      h, w = h // 2, w // 2
    sizes.append(h * w * channels)
  return sum(sizes), max(sizes)


def pool(x: jax.Array, kind: str) -> jax.Array:
  """2x2, stride-2 pooling ('max' as trained, 'avg' as Gatys et al. recommend for synthesis); floors odd sizes."""
  if kind == "max":
    return nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
  if kind == "avg":
    return nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")
  raise ValueError(f"unknown pooling {kind!r}; expected 'max' or 'avg'")


def pool_switches(x: jax.Array) -> jax.Array:
  """Where `pool(x, 'max')` took each value: a boolean mask the shape of `x`, one True per channel per 2x2 window.

  The True marks the window's maximum; among equal maxima the first in row-major order (top-left, top-right,
  bottom-left, bottom-right), which is where max pooling's gradient goes. A last row or column that the pooling
  drops (odd sizes: it floors) is all False."""
  n, h, w, c = x.shape
  hp, wp = h // 2, w // 2
  windows = x[:, : 2 * hp, : 2 * wp].reshape(n, hp, 2, wp, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(n, hp, wp, c, 4)
  mask = jax.nn.one_hot(jnp.argmax(windows, axis=-1), 4, dtype=jnp.bool_)  # argmax: the first of equal maxima
  mask = mask.reshape(n, hp, wp, c, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(n, 2 * hp, 2 * wp, c)
  return jnp.pad(mask, ((0, 0), (0, h - 2 * hp), (0, w - 2 * wp), (0, 0)))


def pools_before(arch: str, layer: str) -> dict[str, str]:
  """{pool name: the layer it pools} for every pooling before `layer`, in forward order (e.g. pool1: relu1_2)."""
  order = layer_names(arch)
  check_layers(arch, [layer])
  return {name: order[i - 1] for i, name in enumerate(order[: order.index(layer)]) if name.startswith("pool")}


def features_and_switches(variables: Mapping, x: jax.Array, *, arch: str,
                          layer: str) -> tuple[jax.Array, dict[str, jax.Array]]:
  """(the activation at `layer`, {pool name: `pool_switches` of its input}) of a max-pooling VGG on `x`.

  `variables` as for `VGG.apply`; `x` preprocessed NHWC. The switches let a decoder put each value back where the
  encoder's max pooling found it (`nst_jax.models.layers.max_unpool`)."""
  pools = pools_before(arch, layer)
  feats = VGG(arch, (layer, *pools.values()), pooling="max").apply(variables, x)
  return feats[layer], {name: pool_switches(feats[source]) for name, source in pools.items()}


BACKWARD_KERNELS = "backward_kernels"  # optional variable collection: {conv name: {"kernel": backward kernel}}
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """3x3, stride-1, zero-padded ('same') convolution of NHWC `x` with an HWIO kernel, as `flax.linen.Conv`."""
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DIMENSIONS)


def backward_kernel(kernel: jax.Array) -> jax.Array:
  """The kernel whose `conv3x3` is the input gradient of `conv3x3(., kernel)`: flipped in space, I and O swapped."""
  return jnp.swapaxes(jnp.flip(kernel, (0, 1)), 2, 3)


def backward_kernels(params: dict) -> dict:
  """`backward_kernel` of every convolution in `params`, as the `BACKWARD_KERNELS` collection of `VGG.apply`."""
  return {name: {"kernel": backward_kernel(p["kernel"])} for name, p in params.items()}


@jax.custom_vjp
def _conv3x3_given_backward(x: jax.Array, kernel: jax.Array, kernel_t: jax.Array) -> jax.Array:
  return conv3x3(x, kernel)


def _conv3x3_given_backward_fwd(x, kernel, kernel_t):
  return conv3x3(x, kernel), (x, kernel, kernel_t)


def _conv3x3_given_backward_bwd(residuals, g):
  x, kernel, kernel_t = residuals
  # The kernel gradient only when asked for: under jit XLA drops it when nothing uses it (optimising an image).
  d_kernel = jax.vjp(lambda k: conv3x3(x, k), kernel)[1](g)[0]
  # kernel_t is a function of kernel, not an independent input: its cotangent is folded into nothing.
  return conv3x3(g, kernel_t), d_kernel, jnp.zeros_like(kernel_t)


_conv3x3_given_backward.defvjp(_conv3x3_given_backward_fwd, _conv3x3_given_backward_bwd)


class Conv3x3(nn.Module):
  """`flax.linen.Conv(features, (3, 3), padding=1)` with the same parameters ('kernel' HWIO, 'bias').

  It uses a precomputed input-gradient kernel when the `BACKWARD_KERNELS` collection holds one for this layer."""

  features: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
    x, kernel, bias = x.astype(self.dtype), kernel.astype(self.dtype), bias.astype(self.dtype)
    if self.has_variable(BACKWARD_KERNELS, "kernel"):
      kernel_t = self.get_variable(BACKWARD_KERNELS, "kernel").astype(self.dtype)
      y = _conv3x3_given_backward(x, kernel, kernel_t)
    else:
      y = conv3x3(x, kernel)
    return y + bias


class VGG(nn.Module):
  """VGG feature extractor returning `{layer name: NHWC activation}` for `outputs`.

  `apply({"params": p}, x)`, or `apply({"params": p, BACKWARD_KERNELS: backward_kernels(p)}, x)` for cheaper
  gradients with respect to `x` when the same parameters serve many evaluations.

  Attributes:
    arch: 'vgg16' or 'vgg19'.
    outputs: names of the layers to return (any of `layer_names(arch)`).
    pooling: 'max' or 'avg'.
    dtype: computation dtype (parameters stay float32); bf16 halves activation memory.
  """

  arch: str
  outputs: tuple[str, ...]
  pooling: str = "max"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, valid: Mapping[int, jax.Array] | None = None) -> dict[str, jax.Array]:
    """`valid` ({stride: (N, H/stride, W/stride)} of 0/1, strides 1, 2, 4, ... up to the deepest output's): every
    convolution's and pooling's output is multiplied by the map of its stride. The tiles of `nst_jax.highres` use it
    so that a window computes what the whole image's network computes: zero outside the image."""
    last = deepest_layer(self.arch, self.outputs)
    shapes = conv_shapes(self.arch)
    wanted = set(self.outputs)
    feats: dict[str, jax.Array] = {}
    x = x.astype(self.dtype)
    stride = 1

    def masked(y: jax.Array) -> jax.Array:
      return y if valid is None else y * valid[stride][..., None].astype(self.dtype)

    for name in layer_names(self.arch):
      if name.startswith("conv"):
        features = shapes[name][1][0]
        x = masked(Conv3x3(features, dtype=self.dtype, name=name)(x))
      elif name.startswith("relu"):
        x = nn.relu(x)
      else:
        stride *= 2
        x = masked(pool(x, self.pooling))
      if name in wanted:
        feats[name] = x
      if name == last:
        break
    return feats


def random_params(arch: str, seed: int = 0) -> dict:
  """He-initialised float32 parameters: a test or timing stand-in for real weights.

  Activations keep their scale through all 16 layers, so nothing underflows to denormals or overflows."""
  rng = np.random.default_rng(seed)
  params = {}
  for name, (kshape, bshape) in conv_shapes(arch).items():
    fan_in = kshape[0] * kshape[1] * kshape[2]
    params[name] = {"kernel": (rng.standard_normal(kshape) * np.sqrt(2.0 / fan_in)).astype(np.float32),
                    "bias": (0.1 * rng.standard_normal(bshape)).astype(np.float32)}
  return params


def params_for(arch: str, params: dict, outputs: Sequence[str]) -> dict:
  """The subset of a full parameter dict that `VGG(arch, outputs)` uses (convs up to the deepest output)."""
  order = layer_names(arch)
  last = order.index(deepest_layer(arch, outputs))
  used = [n for n in order[: last + 1] if n.startswith("conv")]
  return {name: params[name] for name in used}


def estimate_training_bytes(arch: str, shape: tuple[int, int], outputs: Sequence[str],
                            bytes_per_value: int = 4) -> int:
  """Rough peak memory of one forward + backward pass for an (H, W) image, in bytes.

  Every stored activation up to the deepest requested layer (kept for the backward pass) plus a same-sized gradient
  buffer, plus parameters."""
  h, w = shape
  order = layer_names(arch)
  last = order.index(deepest_layer(arch, outputs))
  shapes = conv_shapes(arch)
  channels = 3
  activations = h * w * 3
  param_values = 0
  for name in order[: last + 1]:
    if name.startswith("conv"):
      channels = shapes[name][1][0]
      param_values += math.prod(shapes[name][0]) + channels
    elif name.startswith("pool"):
      h, w = h // 2, w // 2
    activations += h * w * channels
  return bytes_per_value * (2 * activations + 3 * param_values)


def normalize_activations(arch: str, params: dict, images: Sequence[jax.Array], *,
                          pooling: str = "avg") -> dict:
  """Gatys et al.'s normalised network: every filter rescaled to mean ReLU activation 1 over `images`.

  `images` are preprocessed (1, H, W, 3) arrays. Filter k of conv l is divided by its mean activation m_k (kernel
  and bias) and the next convolution's input channel k is multiplied by m_k, so, ReLU and pooling being positively
  homogeneous, every later layer computes exactly what it did before: only the scale of each channel changes.
  Without this, activation magnitudes fall steeply from relu1_1 to relu5_1 in Caffe-trained VGGs, and deep style
  layers barely count in the loss. Filters that (almost) never activate on `images` are scaled as if their mean were
  a tenth of the layer's median."""
  names = [n for n in layer_names(arch) if n.startswith("conv")]
  relus = tuple(n.replace("conv", "relu") for n in names)
  model = VGG(arch, relus, pooling=pooling)
  out = {name: dict(p) for name, p in params.items()}
  for i, name in enumerate(names):
    # Re-run with the parameters normalised so far: each layer's statistics see its already-rescaled inputs.
    feats = [model.clone(outputs=(relus[i],)).apply({"params": params_for(arch, out, (relus[i],))}, img)
             for img in images]
    means = np.mean([np.asarray(f[relus[i]]).mean(axis=(0, 1, 2)) for f in feats], axis=0)
    # Filters that rarely fire on the reference images would be blown up by a near-zero mean and then dominate
    # the loss on other images: their scale is floored at a tenth of the layer's median.
    floor = 0.1 * np.median(means[means > 0]) if np.any(means > 0) else 1.0
    scale = np.maximum(means, floor).astype(np.float32)
    out[name] = {"kernel": np.asarray(out[name]["kernel"]) / scale, "bias": np.asarray(out[name]["bias"]) / scale}
    if i + 1 < len(names):
      following = names[i + 1]
      out[following] = {"kernel": np.asarray(out[following]["kernel"]) * scale[None, None, :, None],
                        "bias": np.asarray(out[following]["bias"])}
  return out
