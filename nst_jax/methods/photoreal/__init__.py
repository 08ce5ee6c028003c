"""Photorealistic style transfer (Luan et al. 2017, "Deep Photo Style Transfer").

Two optimisations of the same objective (`gatys.build_problem`, or the tiled engine of `nst_jax.highres` with a
`HighresConfig`; the matting term is one more loss term, `StylizeConfig.matting_weight`): 1. segmented style
transfer without the photorealism term (off by default, `stage1_iterations=0`), optionally at `stage1_size` and
upsampled; 2. the same plus λ · sum_c p_cᵀ L p_c (`nst_jax.losses.matting`, L the content's matting Laplacian).
Then the paper's post-processing: `smooth_local_affine` (a per-pixel affine colour map content -> output, its
coefficients joint-bilaterally filtered with the content as guide) and by default a 5x5 `guided_filter`.

Objectives (`PhotorealConfig.objective`; `loss_weights` fills the weights left at None): "calibrated" (the
default) makes every term independent of the scale of the network's activations (relative content and style
errors per layer, `CALIBRATED_LAYER_WEIGHTS`, per-pixel matting energy, no TV); "reference" is the reference
code's objective mapped onto nst_jax's normalised losses (`stylize_config`). `range_weight` keeps the optimised
image inside [0, 1], where the reference clips only when saving.

The package's entry points: `objective` (the settings and each stage's objective), `stages` (the run) and
`smoothing` (the post-processing). The fast method of Li et al. 2018 (PhotoWCT, then a closed-form smoothing) is
`photowct` with `closed_form`, imported by name.
"""

from nst_jax.methods.photoreal.objective import (CALIBRATED_LAYER_WEIGHTS, CALIBRATED_WEIGHTS, INITS, OBJECTIVES,
                                                 PAPER_PRESET, REFERENCE_WEIGHTS, PhotorealConfig, loss_weights,
                                                 stage_shapes, stylize_config)
from nst_jax.methods.photoreal.smoothing import guided_filter, local_affine, smooth_local_affine, window_counts
from nst_jax.methods.photoreal.stages import (PhotorealResult, check_tiled_request, colors_init, initial_image,
                                              photoreal)

__all__ = ["CALIBRATED_LAYER_WEIGHTS", "CALIBRATED_WEIGHTS", "INITS", "OBJECTIVES", "PAPER_PRESET",
           "REFERENCE_WEIGHTS", "PhotorealConfig", "PhotorealResult", "check_tiled_request", "colors_init",
           "guided_filter", "initial_image", "local_affine", "loss_weights", "photoreal", "smooth_local_affine",
           "stage_shapes", "stylize_config", "window_counts"]
