"""Timing of nst_jax: the benchmark harness (`benchmarking`), its command-line entry points and the GPU suite."""
