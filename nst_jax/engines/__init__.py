"""The optimisation loop the whole-image and tiled problems run through."""
