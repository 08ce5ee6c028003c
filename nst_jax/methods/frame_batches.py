"""Frames of one size as one batch sharded over the devices, for the feed-forward methods' video path.

The batch is split along its first axis over a one-axis `Mesh` (every device by default) with `NamedSharding`; a
jitted pass then runs on each device's frames (computation follows the data). The batch is padded to a multiple of
the device count by repeating its last frame, which the caller drops from the result.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "frames"


def frames_mesh(devices=None) -> Mesh:
  """A one-axis mesh over `devices` (default: every device)."""
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), (AXIS,))


def padded_count(count: int, mesh: Mesh) -> int:
  """`count` frames padded up to a multiple of the mesh's device count."""
  return count + (-count) % mesh.size


def shard_frames(frames: np.ndarray, mesh: Mesh) -> jax.Array:
  """[N, ...] frames, padded with copies of the last to `padded_count(N)`, placed split along axis 0 over `mesh`."""
  frames = np.asarray(frames)
  extra = padded_count(len(frames), mesh) - len(frames)
  if extra:
    frames = np.concatenate([frames, np.repeat(frames[-1:], extra, axis=0)])
  return jax.device_put(frames, NamedSharding(mesh, PartitionSpec(mesh.axis_names)))
