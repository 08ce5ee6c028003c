"""Neural style transfer in JAX/Flax: Gatys et al., high resolution, photorealistic (Luan et al.) and AdaIN.

Subpackages by concern: models, losses, methods, highres, io, weights, cli (README.md, Layout)."""
