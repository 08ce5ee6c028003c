"""The benchmark harness behind experiments/benchmarks/benchmark.py and experiments/benchmarks/gpu_suite.py, outside
the installed package."""
