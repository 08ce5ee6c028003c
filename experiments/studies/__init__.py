"""Scripts that measure nst_jax's own choices: settings sweeps, comparisons against reference pictures, profiles."""
