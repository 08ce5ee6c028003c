"""AdaIN (Huang & Belongie 2017): any style in one forward pass of an encoder, the AdaIN operation and a trained
decoder.

  ops         the AdaIN operation, its controls (alpha, style weights, masks) and losses: pure jnp on features
  stylize     inference: `Model`, `make_model`, `style_statistics`, `stylize` (tiled above a pixel budget)
  cache       style statistics cached per style file, so a repeated call does not encode its style again
  objective   the training objectives: the paper's terms, reconstruction, distillation, colour, the optimum
  train       decoder (and student encoder) training: `TrainConfig`, `make_trainer`, `train`, checkpoints
  runs        one `train adain` run: its student encoder, learning curve and exported file
  evaluation  the held-out split and the measurements a trained model is judged by

The training images come from `nst_jax.io.training_images` (shared with WCT training); the networks and their
files from `nst_jax.models.adain_decoder` and `nst_jax.models.adain_student`.
"""
