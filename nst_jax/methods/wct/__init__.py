"""Universal style transfer (Li et al. 2017): `ops` (whitening and colouring, pure jnp), `stylize` (the cascade over
the encoder's levels with their reconstruction decoders), `train` and `runs` (training the decoders, resumable, and
exporting them as one file)."""
