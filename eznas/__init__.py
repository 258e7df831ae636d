"""eznas: evolve zero-cost NAS proxies with typed genetic programming.

The package is organised one idea per module (see README): `spaces` builds networks,
`benchmarks` reads ground truth, `inputs` makes minibatches, `probe` extracts statistics,
`cache` stores them, `evolve`/`fitness` run the GP, `export` writes standalone proxies.
"""

__version__ = "0.1.0"
