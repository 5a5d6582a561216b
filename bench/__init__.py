"""Every benchmark and its committed results (``bench/results/``); not part of the ``pdrl`` wheel.

Single-file benchmarks run as scripts (``python bench/<name>.py``); the MI benchmark is the package
``bench.mi``, run from the repository root as ``python -m bench.mi``. Benchmark code may import ``pdrl``;
``pdrl`` never imports ``bench``.
"""
