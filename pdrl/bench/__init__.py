"""Benchmarks that write measured results: ``python -m pdrl.bench.mi`` (MI estimation)."""
