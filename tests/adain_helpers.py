"""Helpers of the AdaIN tests (adain_test.py, adain_train_test.py)."""

from __future__ import annotations

from nst_jax.models import adain_decoder
from nst_jax.weights.format import VGGWeights


def decoder_checkpoint(encoder: VGGWeights, width: int = 8, seed: int = 0) -> adain_decoder.DecoderCheckpoint:
  """A freshly initialised decoder of `width` tied to `encoder`."""
  return adain_decoder.DecoderCheckpoint(params=adain_decoder.init_decoder("vgg16", width, seed=seed), arch="vgg16",
                                         width=width, encoder_sha256=encoder.source_sha256,
                                         encoder_source=encoder.source, info={"note": "test"})
