"""eznas: evolve zero-cost NAS proxies with typed genetic programming.

The package is organised one idea per module (see README's Layout): `spaces` builds networks,
`benchmarks` reads ground truth, `inputs` makes minibatches, `probe` extracts statistics,
`cache` stores them, `evolve`/`fitness` run the GP, `export` writes standalone proxies.

Importing eznas sets ``OMP_WAIT_POLICY=PASSIVE`` unless it is set already (before torch loads
OpenMP): torch's threads then sleep between parallel regions instead of spinning, which on a
machine whose cores other processes use made a probe up to 10x slower (80 s against 7 s for a
small NB201 network at 2 threads, load 10 on 2 cores). Set the variable yourself to override.

It also sets ``THP_MEM_ALLOC_ENABLE=1`` unless set (read by torch at its first CPU allocation, and
inherited by worker processes): torch then backs CPU tensors of 2 MiB and more with transparent
huge pages, where the kernel allows them on request (``madvise``). The batched evaluator allocates
stacks of hundreds of MiB per primitive call; with 4 KiB pages half of its time went to page
faults (experiments/bench_fitness.py: 10.2 against 20.5 programs/s, the same peak memory; see
README, "Huge pages"). Memory placement changes no arithmetic. Set it to 0 to override.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
