"""Benchmark data for users elsewhere: ``eznas data fetch`` and ``eznas data check``.

- `sources`: every file eznas knows, its public source, and its recorded checksum (if any).
- `download`: resumable HTTP(S) downloads with the standard library.
- `convert`: NDS files out of ``data.zip``, CIFAR samples out of the official tarballs.
- `verify`: checksum and structure checks.
- `fetch`, `check`: the two commands (``fetch.fetch``, ``check.check``).
- `commands`: their argparse wiring (``add_arguments``, ``run``), registered by ``eznas.cli``.
"""
