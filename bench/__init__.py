"""Every benchmark and its committed results (``bench/results/``); not part of the ``pdrl`` wheel.

Single-file benchmarks run as scripts (``python bench/<name>.py``); the MI benchmark is the package
``bench.mi``, run from the repository root as ``python -m bench.mi``, and the shallow task's scripts also run as
``python -m bench.shallow {speed,profile,mnist,cifar}`` (``bench/README.md`` lists every entry point). Benchmark
code may import ``pdrl``; ``pdrl`` never imports ``bench``.
"""
