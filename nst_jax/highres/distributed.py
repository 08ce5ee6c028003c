"""Devices and processes: the one-axis device mesh the tiles are sharded over, placing host values on it, and
`jax.distributed` start-up for several hosts."""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from nst_jax.errors import NSTError

AXIS = "tiles"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A one-axis mesh over `devices` (default: every device of every process)."""
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), (AXIS,))


def put(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """A global array from the same host value on every process (also across processes under jax.distributed)."""
  array = np.asarray(array)
  return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def init_distributed(*, coordinator: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None) -> bool:
  """`jax.distributed.initialize` from the arguments or, where they are None, the environment variables
  NST_JAX_COORDINATOR (host:port of process 0), NST_JAX_NUM_PROCESSES and NST_JAX_PROCESS_ID. Returns False (and
  does nothing) without a coordinator. Must run before JAX computes anything. On CPU the collectives go over gloo."""
  coordinator = coordinator or os.environ.get("NST_JAX_COORDINATOR") or None
  if not coordinator:
    return False
  try:
    if num_processes is None:
      num_processes = int(os.environ.get("NST_JAX_NUM_PROCESSES", "0"))
    if process_id is None:
      process_id = int(os.environ.get("NST_JAX_PROCESS_ID", "-1"))
  except ValueError as e:
    raise NSTError(f"NST_JAX_NUM_PROCESSES / NST_JAX_PROCESS_ID must be integers: {e}") from None
  if num_processes < 1:
    raise NSTError(f"--num_processes must be at least 1 with --coordinator_address, got {num_processes}")
  if not 0 <= process_id < num_processes:
    raise NSTError(f"--process_id must lie in [0, {num_processes}), got {process_id}")
  host, sep, port = coordinator.rpartition(":")
  if not sep or not host or not port.isdigit():
    raise NSTError(f"--coordinator_address must be host:port, got {coordinator!r}")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
  return True
