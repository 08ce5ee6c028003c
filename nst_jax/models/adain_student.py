"""A small student encoder for fast AdaIN inference, distilled from the VGG encoder (the teacher).

The teacher (hed-vgg16 up to relu4_1) costs more than a whole stylisation may take on a CPU (docs/adain.md). The
student has the teacher's topology (VGG16 up to relu4_1, 3x3 zero-padded convolutions, 2x2 max pooling, the same
input preprocessing) with `width` / 64 of its channels in blocks 1-3 and all 512 relu4_1 channels, so AdaIN's
statistics live in the teacher's relu4_1 space (Wang et al. 2020, "Collaborative Distillation for Ultra-Resolution
Universal Style Transfer", compress the VGG encoder of AdaIN/WCT similarly).

Initialisation prunes the teacher: every layer keeps the output channels that are most active on sample images,
and the next layer the matching input channels, so student channel k of relu_l *is* teacher channel
`channels[l][k]` before any training. Distillation (`distill_loss`) then matches the student's relu1_1 .. relu4_1
to those teacher channels, each layer's squared error relative to the teacher's mean square so that all four count.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.errors import NSTError
from nst_jax.io import checkpoint
from nst_jax.models import vgg
from nst_jax.models.preprocessing import Preprocessing

LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
CONVS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1")
_POOL_AFTER = ("conv1_2", "conv2_2", "conv3_3")
STUDENT_FORMAT = "nst_jax-adain-student"
STUDENT_FORMAT_VERSION = 1


@dataclasses.dataclass
class Student:
  """A student encoder and its lineage.

  Attributes:
    params: flat {'convX_Y/kernel', 'convX_Y/bias'} parameters.
    width: its width (64 = the teacher's).
    channels: {relu1_1..relu4_1: the teacher channel behind each of its channels}.
    teacher_arch: the teacher's architecture.
    teacher_sha256: `VGGWeights.source_sha256` of the teacher's weights.
    info: free-form JSON-able record (how it was made).
    preprocessing: the teacher's input preprocessing, which the student shares."""

  params: dict
  width: int
  channels: dict[str, list[int]]
  teacher_arch: str = "vgg16"
  teacher_sha256: str = ""
  info: dict = dataclasses.field(default_factory=dict)
  preprocessing: Preprocessing | None = None  # the teacher's input preprocessing, which the student shares

  def __post_init__(self) -> None:
    check_params(self.params, self.width, "student encoder")
    for layer, n in zip(LAYERS, (student_channels(self.width)[c] for c in ("conv1_1", "conv2_1", "conv3_1",
                                                                           "conv4_1"))):
      if len(self.channels.get(layer, ())) != n:
        raise NSTError(f"student encoder: {layer} needs {n} teacher channel indices")


def check_params(params: Mapping[str, object], width: int, where: str) -> None:
  """Raises NSTError unless `params` are exactly the float16/32, finite arrays of a width-`width` student."""
  expected = {}
  for name, (kshape, bshape) in student_shapes(width).items():
    expected[name + "/kernel"], expected[name + "/bias"] = kshape, bshape
  if set(params) != set(expected):
    raise NSTError(f"{where}: arrays {sorted(set(params) ^ set(expected))[:2]} do not fit a width-{width} student")
  for key, shape in expected.items():
    arr = np.asarray(params[key])
    if arr.dtype not in (np.float16, np.float32) or arr.shape != shape or not np.all(np.isfinite(arr)):
      raise NSTError(f"{where}: array {key!r} is {arr.dtype} {arr.shape}, expected finite float {shape}")


def save_student(path: str | os.PathLike, student: Student) -> pathlib.Path:
  """Writes the student as a state file of `nst_jax.io.checkpoint`, atomically.

  Format "nst_jax-adain-student": float32 arrays and a JSON header."""
  meta = {"width": student.width, "channels": student.channels, "teacher_arch": student.teacher_arch,
          "teacher_sha256": student.teacher_sha256, "info": student.info,
          "preprocessing": preprocessing_dict(student.preprocessing)}
  return checkpoint.write(path, kind=STUDENT_FORMAT, version=STUDENT_FORMAT_VERSION, meta=meta,
                          arrays={k: np.asarray(v, np.float32) for k, v in student.params.items()})


def load_student(path: str | os.PathLike) -> Student:
  """Reads `save_student`'s file strictly."""
  where = f"--student {str(path)!r}"
  if not pathlib.Path(path).is_file():
    raise NSTError(f"{where}: no such student encoder file")
  meta, arrays = checkpoint.read(path, what="AdaIN student encoder")
  checkpoint.check_format(meta, path=path, kind=STUDENT_FORMAT, versions=(STUDENT_FORMAT_VERSION,),
                          what="AdaIN student encoder")
  try:
    return Student(params={k: a.astype(np.float32) for k, a in arrays.items()}, width=int(meta["width"]),
                   channels={k: list(v) for k, v in meta["channels"].items()}, teacher_arch=meta["teacher_arch"],
                   teacher_sha256=meta["teacher_sha256"], info=dict(meta.get("info", {})),
                   preprocessing=preprocessing_from(meta.get("preprocessing")))
  except (KeyError, TypeError, ValueError, AttributeError) as e:
    raise NSTError(f"{where}: malformed student encoder metadata ({type(e).__name__}: {e})") from None


def preprocessing_dict(preprocessing: Preprocessing | None) -> dict | None:
  """`preprocessing` as the JSON-able dict a student file stores (None stays None)."""
  return None if preprocessing is None else dataclasses.asdict(preprocessing)


def preprocessing_from(spec: Mapping | None) -> Preprocessing | None:
  """The Preprocessing of `preprocessing_dict` (None stays None); NSTError when malformed."""
  if spec is None:
    return None
  try:
    return Preprocessing(str(spec["channel_order"]), float(spec["input_scale"]), tuple(spec["mean"]),
                         tuple(spec["std"]))
  except (KeyError, TypeError, ValueError) as e:
    raise NSTError(f"student encoder: malformed preprocessing {spec!r} ({e})") from None


def params_sha256(params: Mapping[str, np.ndarray]) -> str:
  """sha256 over the arrays (float32, sorted by name): identifies a student's weights, e.g. for caches."""
  digest = hashlib.sha256()
  for key in sorted(params):
    digest.update(key.encode())
    digest.update(np.ascontiguousarray(np.asarray(params[key], np.float32)).tobytes())
  return digest.hexdigest()


def student_channels(width: int) -> dict[str, int]:
  """{conv: output channels}: the teacher's times width / 64 in blocks 1-3, 512 for conv4_1."""
  if width < 1:
    raise ValueError(f"student width must be positive, got {width}")
  full = {name: shape[1][0] for name, shape in vgg.conv_shapes("vgg16").items() if name in CONVS}
  return {name: (512 if name == "conv4_1" else max(1, n * width // 64)) for name, n in full.items()}


def student_shapes(width: int) -> dict[str, tuple[tuple[int, int, int, int], tuple[int]]]:
  """{conv: (HWIO kernel shape, bias shape)} of the student, in forward order."""
  out, cin = {}, 3
  for name, cout in student_channels(width).items():
    out[name] = ((3, 3, cin, cout), (cout,))
    cin = cout
  return out


def forward(params: Mapping, images: jax.Array, *, layers: Sequence[str] = ("relu4_1",),
            valid: jax.Array | None = None) -> dict[str, jax.Array]:
  """{relu layer: features} of *preprocessed* NHWC images; `params` is {'convX_Y/kernel': ..., '/bias': ...}.

  `valid` ((1 or N, H, W, 1), 1 on a top-left region whose sides are multiples of 8, 0 elsewhere) zeroes every
  activation outside that region: the features inside are then exactly those of the region alone (whose border the
  zero padding of each convolution sees), so an image padded to a larger size computes what it would unpadded."""
  feats, x = {}, images if valid is None else images * valid
  last = max(CONVS.index(layer.replace("relu", "conv")) for layer in layers)
  for name in CONVS[:last + 1]:
    x = jax.nn.relu(vgg.conv3x3(x, params[name + "/kernel"].astype(x.dtype)) + params[name + "/bias"])
    if valid is not None:
      x = x * valid
    relu = name.replace("conv", "relu")
    if relu in layers:
      feats[relu] = x
    if name in _POOL_AFTER:
      x = vgg.pool(x, "max")
      valid = None if valid is None else valid[:, ::2, ::2]
  return feats


def encode(params: Mapping, images: jax.Array, *, preprocessing: Preprocessing,
           layers: Sequence[str] = ("relu4_1",), valid: jax.Array | None = None) -> dict[str, jax.Array]:
  """{layer: features} of RGB [0, 1] images (N, H, W, 3) under the teacher's preprocessing (`valid`: `forward`)."""
  return forward(params, preprocessing.apply(images), layers=tuple(layers), valid=valid)


def prune_teacher(teacher: Mapping[str, Mapping[str, np.ndarray]], images: np.ndarray, *, width: int,
                  preprocessing: Preprocessing, max_rows: int = 100_000,
                  seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, list[int]]]:
  """A student pruned from the teacher and refitted by least squares, without training.

  Layer by layer: keep the teacher's output channels with the largest mean squared activation, then fit the
  student's kernel and bias by ridge least squares so that, from the student's own (pruned, already fitted) input
  channels, its pre-activations reproduce the teacher's for the kept channels (channel pruning with linear
  reconstruction, He et al. 2017). Before any training the student thus approximates the teacher's relu1_1..relu4_1
  channels as well as a linear map of its inputs can (relu1_1 exactly).

  Args:
    teacher: the teacher's VGG parameters.
    images: (N, H, W, 3) RGB in [0, 1], the sample images.
    width: the student's width.
    preprocessing: the teacher's input preprocessing.
    max_rows: at most this many sampled positions per least-squares fit.
    seed: of the position sampling.

  Returns:
    (student params, {relu layer: teacher channel of each student channel}).
  """
  keep_n = student_channels(width)
  rng = np.random.default_rng(seed)
  params: dict[str, np.ndarray] = {}
  channels: dict[str, list[int]] = {}
  t = s = jnp.asarray(preprocessing.apply(jnp.asarray(images, jnp.float32)))
  for name in CONVS:
    t_pre = vgg.conv3x3(t, jnp.asarray(teacher[name]["kernel"])) + jnp.asarray(teacher[name]["bias"])
    energy = np.asarray(jnp.mean(jnp.square(jax.nn.relu(t_pre)), axis=(0, 1, 2)))
    keep = np.sort(np.argsort(-energy, kind="stable")[:keep_n[name]])
    patches = _patches3x3(np.asarray(s))
    rows = rng.choice(len(patches), min(max_rows, len(patches)), replace=False)
    x = np.concatenate([patches[rows], np.ones((len(rows), 1), np.float32)], axis=1).astype(np.float64)
    y = np.asarray(t_pre).reshape(-1, t_pre.shape[-1])[rows][:, keep].astype(np.float64)
    gram = x.T @ x
    ridge = 1e-4 * np.trace(gram) / len(gram)
    solution = np.linalg.solve(gram + ridge * np.eye(len(gram)), x.T @ y)
    params[name + "/kernel"] = solution[:-1].reshape(3, 3, s.shape[-1], len(keep)).astype(np.float32)
    params[name + "/bias"] = solution[-1].astype(np.float32)
    t = jax.nn.relu(t_pre)
    s = jax.nn.relu(vgg.conv3x3(s, jnp.asarray(params[name + "/kernel"])) + params[name + "/bias"])
    channels[name.replace("conv", "relu")] = [int(i) for i in keep]
    if name in _POOL_AFTER:
      t, s = vgg.pool(t, "max"), vgg.pool(s, "max")
  return params, {k: v for k, v in channels.items() if k in LAYERS}


def _patches3x3(x: np.ndarray) -> np.ndarray:
  """(N*H*W, 9*C) zero-padded 3x3 neighbourhoods of an NHWC array, ordered as an HWIO kernel's (kh, kw, cin)."""
  n, h, w, c = x.shape
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return np.concatenate([padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)],
                        axis=-1).reshape(n * h * w, 9 * c)


def distill_loss(*, student_feats: Mapping[str, jax.Array], teacher_feats: Mapping[str, jax.Array],
                 channels: Mapping[str, Sequence[int]], layers: Sequence[str] = LAYERS) -> jax.Array:
  """Distillation loss sum_l mean((S_l - T_l[channels_l])^2) / mean(T_l[channels_l]^2) over `layers`."""
  total = 0.0
  for layer in layers:
    target = jnp.take(teacher_feats[layer], jnp.asarray(channels[layer]), axis=-1)
    total = total + jnp.mean(jnp.square(student_feats[layer] - target)) / (jnp.mean(jnp.square(target)) + 1e-8)
  return total


def flops_per_pixel(width: int) -> float:
  """Multiply-adds x 2 per input pixel of the student's convolutions (a 512x512 image: x 262144)."""
  total, area = 0.0, 1.0
  for name, ((kh, kw, cin, cout), _) in student_shapes(width).items():
    total += 2 * kh * kw * cin * cout * area
    if name in _POOL_AFTER:
      area /= 4
  return total
