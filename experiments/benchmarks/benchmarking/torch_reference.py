"""The PyTorch reference of the benchmark: the same Gatys loss written as a PyTorch user would, its timings, and the
check that it computes what nst_jax computes. Needs the optional torch extra."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import optim
from nst_jax.models import vgg

from experiments.benchmarks.benchmarking.flops import conv_plan
from experiments.benchmarks.benchmarking.jax_timing import jax_value_and_grad, per_step
from experiments.benchmarks.benchmarking.machine import PeakMemory, cpu_info, time_calls
from experiments.benchmarks.benchmarking.problem import BenchmarkProblem, BenchmarkSettings


class TorchGatys:
  """The same Gatys loss in PyTorch, written as a PyTorch user would: eager autograd with the image as a leaf
  tensor, F.conv2d on the same weights (HWIO -> OIHW), channels_last memory format (oneDNN's preferred layout on
  CPU), every core, oneDNN enabled, and for bf16 `torch.autocast` around the forward pass (convolutions and the
  Gram products in bf16, losses in fp32)."""

  def __init__(self, problem: BenchmarkProblem, *, threads: int = 0):
    import torch  # noqa: PLC0415 (benchmark-only extra)
    self.torch = torch
    s = problem.settings
    self.settings = s
    self.config = s.config()
    self.device = "cuda" if torch.cuda.is_available() and jax.default_backend() == "gpu" else "cpu"
    if self.device == "cpu":
      torch.set_num_threads(threads or cpu_info()["cores"])
      torch.backends.mkldnn.enabled = True
    else:
      torch.backends.cudnn.benchmark = True
    self.memory_format = torch.channels_last
    self.bf16 = s.precision == "bf16"
    self.plan = conv_plan(s.arch, problem.shape, s.layers)
    params = vgg.params_for(s.arch, problem.weights.params, s.layers)
    self.kernels = {name: (self._tensor(np.asarray(p["kernel"]).transpose(3, 2, 0, 1)).contiguous(
        memory_format=self.memory_format), self._tensor(np.asarray(p["bias"]))) for name, p in params.items()}
    pre = problem.weights.preprocessing
    self.scale, self.flip = pre.input_scale, pre.channel_order == "BGR"
    self.mean = self._tensor(np.asarray(pre.mean, np.float32).reshape(1, 3, 1, 1))
    self.std = self._tensor(np.asarray(pre.std, np.float32).reshape(1, 3, 1, 1))
    self.content = {n: self._tensor(np.asarray(v, np.float32).transpose(0, 3, 1, 2)).contiguous(
        memory_format=self.memory_format) for n, v in problem.inputs["content"].items()}
    self.style = {n: self._tensor(np.asarray(v, np.float32)[0]) for n, v in problem.inputs["style"].items()}
    self.x = self.image_tensor(problem.x0)

  def _tensor(self, array: np.ndarray):
    return self.torch.from_numpy(np.array(array, np.float32, order="C")).to(self.device)  # a writable copy

  def image_tensor(self, image: np.ndarray):
    """(H, W, 3) -> a contiguous (1, H, W, 3) leaf that requires grad. `loss` views it as (1, 3, H, W), which is
    then channels_last; a contiguous leaf is what torch.optim.LBFGS needs (it flattens gradients with view)."""
    return self._tensor(np.asarray(image)[None]).requires_grad_(True)

  def features(self, x) -> dict:
    F = self.torch.nn.functional
    wanted, out = set(self.settings.layers), {}
    last = vgg.deepest_layer(self.settings.arch, self.settings.layers)
    for name in vgg.layer_names(self.settings.arch):
      if name.startswith("conv"):
        x = F.conv2d(x, *self.kernels[name], padding=1)
      elif name.startswith("relu"):
        x = self.torch.relu(x)
      else:
        x = F.avg_pool2d(x, 2) if self.settings.pooling == "avg" else F.max_pool2d(x, 2)
      if name in wanted:
        out[name] = x
      if name == last:
        break
    return out

  def loss(self, image):
    """The weighted sum of `gatys.make_loss_terms`' content, style and TV terms for a (1, H, W, 3) image."""
    torch, c = self.torch, self.config
    x = image.permute(0, 3, 1, 2)  # NCHW view, channels_last strides
    net_in = x * self.scale
    if self.flip:
      net_in = net_in.flip(1)
    net_in = (net_in - self.mean) / self.std
    with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.bf16):
      feats = self.features(net_in)
      grams = {}
      for name in self.settings.style_layers:
        f = feats[name]
        flat = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])  # a view for channels_last features
        grams[name] = flat.t() @ flat
    content = sum(torch.mean(torch.square(feats[n].float() - t)) for n, t in self.content.items()) / len(
        self.content)
    style = 0.0
    for name, target in self.style.items():
      f = feats[name]
      n, m = f.shape[1], f.shape[2] * f.shape[3]
      style = style + torch.sum(torch.square(grams[name].float() / m - target)) / (4.0 * n * n)
    style = style / len(self.style)
    dy = x[:, :, 1:, :] - x[:, :, :-1, :]
    dx = x[:, :, :, 1:] - x[:, :, :, :-1]
    tv = torch.mean(torch.square(dy)) + torch.mean(torch.square(dx))
    return c.content_weight * content + c.style_weight * style + c.tv_weight * tv

  def value_and_grad(self, x=None) -> tuple[float, Any]:
    x = self.x if x is None else x
    x.grad = None
    loss = self.loss(x)
    loss.backward()
    self.sync()
    return float(loss.detach()), x.grad

  def sync(self) -> None:
    if self.device == "cuda":
      self.torch.cuda.synchronize()

  def peak_memory(self):
    """A context measuring peak memory: CUDA allocator peak on GPU, RSS on CPU."""
    if self.device == "cuda":
      return _TorchCudaPeak(self.torch)
    return PeakMemory()


class _TorchCudaPeak:
  def __init__(self, torch):
    self.torch = torch
    self.result: dict[str, Any] = {}

  def __enter__(self):
    self.torch.cuda.reset_peak_memory_stats()
    return self

  def __exit__(self, *exc) -> None:
    self.result = {"device_peak_bytes": int(self.torch.cuda.max_memory_allocated())}


def time_torch(problem: BenchmarkProblem) -> dict[str, Any]:
  """Eval and optimizer-step timings and memory of the PyTorch reference."""
  s = problem.settings
  ref = TorchGatys(problem, threads=s.threads)
  result: dict[str, Any] = {"device": ref.device, "threads": ref.torch.get_num_threads()}
  with ref.peak_memory() as mem:
    result["eval"] = time_calls(ref.value_and_grad, warmup=s.warmup, repeats=s.repeats)
  result["eval"].update(mem.result)
  result["loss"], grad = ref.value_and_grad()
  result["grad_norm"] = float(grad.norm())
  result["step"] = time_torch_steps(ref, s)
  return result


_TORCH_OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop", "lbfgs": "LBFGS"}


def time_torch_steps(ref: TorchGatys, s: BenchmarkSettings) -> dict[str, Any] | None:
  """torch.optim's version of `s.optimizer` on the same loss: per-iteration time and evaluations."""
  torch = ref.torch
  name = _TORCH_OPTIMIZERS.get(s.optimizer)
  if name is None:
    return {"skipped": f"no torch.optim counterpart of optax.{s.optimizer}"}
  x = ref.image_tensor(ref.x.detach().cpu().numpy()[0])
  calls = [0]

  def closure():
    calls[0] += 1
    x.grad = None
    loss = ref.loss(x)
    loss.backward()
    return loss

  if name == "LBFGS":
    # As neural-style: the line search and history of nst_jax's default, no early stop.
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=s.steps, history_size=10, line_search_fn="strong_wolfe",
                            tolerance_grad=0.0, tolerance_change=0.0)

    def call():
      opt.step(closure)
      ref.sync()
  else:
    lr = optim.DEFAULT_LEARNING_RATES.get(s.optimizer) or 0.01
    opt = getattr(torch.optim, name)([x], lr=lr)

    def call():
      for _ in range(s.steps):
        opt.step(closure)
      ref.sync()

  with ref.peak_memory() as mem:
    for _ in range(s.warmup):
      call()
    calls[0] = 0
    timing = time_calls(call, warmup=0, repeats=s.step_repeats)
  timing = per_step(timing, s.steps)
  timing.update(mem.result)
  timing["evals_per_step"] = calls[0] / (s.steps * s.step_repeats)
  return timing


def check_reference(problem: BenchmarkProblem) -> dict[str, float]:
  """Relative differences of the torch reference's loss and image gradient from nst_jax's at the same point:
  evidence that the two time the same work."""
  loss, grad = jax_value_and_grad(problem)(jnp.asarray(problem.x0), problem.inputs)
  ref = TorchGatys(problem, threads=problem.settings.threads)
  t_loss, t_grad = ref.value_and_grad()
  t_grad = t_grad.detach().cpu().double().numpy()[0]
  grad = np.asarray(grad, np.float64)
  return {"loss_jax": float(loss), "loss_torch": t_loss,
          "loss_rel_diff": abs(float(loss) - t_loss) / max(abs(t_loss), 1e-30),
          "grad_rel_diff": float(np.linalg.norm(grad - t_grad) / max(np.linalg.norm(t_grad), 1e-30))}

