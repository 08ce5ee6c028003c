"""Trained AdaIN decoder files: found by name or path like the other weight files, and paired with their VGG weights.

Here rather than beside the decoder network because both need the weights store.
"""

from __future__ import annotations

from nst_jax.errors import NSTError
from nst_jax.models.adain_decoder import DecoderCheckpoint, load_decoder
from nst_jax.weights.format import VGGWeights
from nst_jax.weights.store import find_trained_file


def resolve_decoder(name_or_path: str) -> DecoderCheckpoint:
  """The decoder checkpoint at a .npz path, or NAME looked up as NAME.npz (`store.find_trained_file`).

  NAME is looked up in `weights_dir()` and then in the source checkout's weights/ folder, where the project's
  trained decoder ships."""
  path = find_trained_file(name_or_path)
  if path is None:
    raise NSTError(f"--decoder {name_or_path!r}: no such decoder file or name")
  return load_decoder(path)


def check_encoder(ckpt: DecoderCheckpoint, weights: VGGWeights) -> None:
  """Raises NSTError unless `weights` are the encoder `ckpt` was trained with (same architecture and weights sha256)."""
  if ckpt.arch != weights.arch or ckpt.encoder_sha256 != weights.source_sha256:
    raise NSTError(f"--decoder was trained with the {ckpt.arch} encoder sha256 {ckpt.encoder_sha256[:12]} "
                   f"({ckpt.encoder_source}), but --weights is {weights.arch} sha256 {weights.source_sha256[:12]} "
                   f"({weights.source}); use the matching --weights or decoder")
