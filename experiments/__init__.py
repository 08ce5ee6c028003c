"""Scripts around nst_jax that are not part of the installed package, run from the repository root as
`python -m experiments.<group>.<name>`: `papers` reproduces published figures, `studies` measures our own choices,
`benchmarks` times the code (the harness and the GPU suite); `common` is the figure scripts' shared plumbing."""
