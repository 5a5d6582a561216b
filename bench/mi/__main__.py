"""``python -m bench.mi sweep|report|throughput ...``, run from the repository root."""

from bench.mi.mi import main

main()
