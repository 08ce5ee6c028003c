"""The benchmark harness (experiments/benchmark.py, experiments/gpu_suite.py), outside the installed package."""
