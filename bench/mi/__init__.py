"""The MI estimation benchmark, ``python -m bench.mi`` (its command line: :mod:`bench.mi.mi`)."""
