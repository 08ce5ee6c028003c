"""Ways of stylising an image: Gatys et al. by optimisation, photorealistic transfer, AdaIN and its training."""
