"""Sliced Wasserstein style loss (Heitz et al. 2021, "A Sliced Wasserstein Loss for Neural Texture Synthesis").

A layer's features are a cloud of M points in R^C. The Gram matrix matches only the cloud's second moments, which a
picture can meet with texture on its edges and flat colour elsewhere; the sliced Wasserstein distance matches the
whole distribution: project both clouds on K unit directions, sort each projection, and compare the sorted values
(the 1-D optimal transport),

  E_l = mean_k mean_m (sort(F v_k)_m - sort(S v_k)_m)^2 / mean_k mean_m sort(S v_k)_m^2,

where the style's sorted projections are resampled to M quantiles when the style has another number of positions.
A flat region gives many equal feature vectors, a spike the style's distribution does not have, so the loss sees
it. The division by the target's mean square makes each layer's term a relative error (a network whose activations
are scaled by a constant gives the same loss), so layers count alike whatever their activation scale.

Directions are a fixed random orthonormal basis per layer (K = C), so the objective is deterministic, as L-BFGS
needs; Heitz et al. redraw them every step for Adam.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Target = Mapping[str, jax.Array]  # {"directions": (C, K), "sorted": (M, K)}


def random_directions(channels: int, *, seed: int) -> np.ndarray:
  """A (C, C) random orthonormal basis (QR of a Gaussian matrix, signs fixed), float32."""
  q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(channels, channels)))
  return (q * np.sign(np.diag(r))[None, :]).astype(np.float32)


def resample_sorted(sorted_values: np.ndarray, count: int) -> np.ndarray:
  """(N, K) ascending columns resampled to (count, K) at evenly spaced quantile positions (midpoints), linearly."""
  n = sorted_values.shape[0]
  positions = (np.arange(count) + 0.5) / count * n - 0.5
  lo = np.clip(np.floor(positions).astype(int), 0, n - 1)
  hi = np.clip(lo + 1, 0, n - 1)
  t = np.clip(positions - lo, 0.0, 1.0)[:, None]
  return (1 - t) * sorted_values[lo] + t * sorted_values[hi]


def style_target(style_features: Sequence[jax.Array], *, positions: int, seed: int,
                 blend: Sequence[float] | None = None) -> dict[str, jax.Array]:
  """The sliced Wasserstein target of one layer from one or more styles' (1, h, w, C) features.

  A blend's styles contribute quantiles in proportion to their `blend` weights (their distributions are mixed),
  resampled to the output's `positions` (h' * w' of the optimised image at this layer); `seed` picks the layer's
  directions (`random_directions`)."""
  blend = np.asarray(blend if blend is not None else [1.0] * len(style_features), np.float64)
  blend = blend / blend.sum()
  channels = style_features[0].shape[-1]
  directions = random_directions(channels, seed=seed)
  parts = []
  counts = np.floor(blend * positions).astype(int)
  counts[np.argmax(blend)] += positions - counts.sum()
  for features, count in zip(style_features, counts):
    if count == 0:
      continue
    projected = np.asarray(jnp.asarray(features).reshape(-1, channels) @ directions, np.float64)
    parts.append(resample_sorted(np.sort(projected, axis=0), int(count)))
  pooled = np.sort(np.concatenate(parts), axis=0)
  return {"directions": jnp.asarray(directions), "sorted": jnp.asarray(pooled, jnp.float32)}


def swd_layer_loss(*, features: jax.Array, target: Target) -> jax.Array:
  """E_l = mean_k mean_m (sort(F v_k)_m - sort(S v_k)_m)^2 / mean_k mean_m sort(S v_k)_m^2 of (1, h, w, C) features.

  `target["sorted"]` (`style_target`) has h * w rows."""
  channels = features.shape[-1]
  projected = features.reshape(-1, channels).astype(jnp.float32) @ target["directions"]
  if projected.shape[0] != target["sorted"].shape[0]:
    raise ValueError(f"the target has {target['sorted'].shape[0]} positions, the features {projected.shape[0]}")
  diff = jnp.sort(projected, axis=0) - target["sorted"]
  return jnp.mean(jnp.square(diff)) / jnp.maximum(jnp.mean(jnp.square(target["sorted"])), 1e-12)


def swd_style_loss(*, features: Mapping[str, jax.Array], targets: Mapping[str, Target],
                   layer_weights: Mapping[str, float]) -> jax.Array:
  """Sliced Wasserstein style loss sum_l w_l E_l over the layers in `targets`."""
  return sum(layer_weights[name] * swd_layer_loss(features=features[name], target=targets[name])
             for name in targets)
