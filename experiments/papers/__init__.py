"""Scripts that reproduce a paper's figures or examples with nst_jax (each docstring: run command, expected result)."""
