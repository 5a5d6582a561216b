"""Timing variants against each other in interleaved rounds, as every speed benchmark in ``bench/`` does.

All variants run in one process, round after round; each round runs every variant once, in an order that changes
from round to round, so that the machine's noise (other jobs, its clock, warm caches) falls on every variant alike.
A benchmark then reports each variant's median (or mean) over the rounds, and mostly their ratios::

    rounds = interleaved_rounds({"fast": run_fast, "slow": run_slow}, rounds=5)
    medians = rounds.medians()  # seconds per call
    print(medians["slow"] / medians["fast"])
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

ORDERS = ("alternate", "rotate")
MEASURES = ("wall_seconds", "returned")


def round_order(names: Sequence[str], round_index: int, order: str = "alternate") -> list[str]:
    """The order in which round ``round_index`` (from 0) runs the variants ``names``.

    ``alternate``: as given in even rounds, reversed in odd ones (a b c, c b a, a b c, ...);
    ``rotate``: round k starts at the k-th name (a b c, b c a, c a b, a b c, ...), so that every variant runs first,
    in the middle and last equally often.
    """
    if order == "alternate":
        return list(names) if round_index % 2 == 0 else list(reversed(names))
    if order == "rotate":
        return [names[(round_index + shift) % len(names)] for shift in range(len(names))]
    raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")


@dataclass(frozen=True)
class Rounds:
    """What :func:`interleaved_rounds` measured: every value, and the order and load of every round.

    ``values[name]``: the variant's value in each measured round, in round order; ``orders``: the order each measured
    round ran the variants in; ``load_before`` / ``load_after``: the 1-minute load average at its start and its end.
    """

    values: dict[str, list[float]]
    orders: list[list[str]]
    load_before: list[float]
    load_after: list[float]

    def medians(self) -> dict[str, float]:
        """Each variant's median over the rounds."""
        return {name: statistics.median(values) for name, values in self.values.items()}

    def means(self) -> dict[str, float]:
        """Each variant's mean over the rounds."""
        return {name: statistics.mean(values) for name, values in self.values.items()}

    def scaled(self, factor: float) -> Rounds:
        """The same rounds with every value multiplied by ``factor`` (e.g. ``1000 / steps``: seconds per call to
        ms per step)."""
        values = {name: [value * factor for value in values] for name, values in self.values.items()}
        return Rounds(values, self.orders, self.load_before, self.load_after)


def interleaved_rounds(
    variants: Mapping[str, Callable[[int], object]],
    rounds: int,
    *,
    order: str = "alternate",
    warmup_rounds: int = 0,
    measure: str = "wall_seconds",
) -> Rounds:
    """Run ``warmup_rounds + rounds`` rounds of every variant, each round in the order :func:`round_order` gives.

    Each variant is called once per round with the round's index (warm-up rounds counted). The value of a call is
    its wall-clock seconds (``measure="wall_seconds"``, ``time.perf_counter``), or the number the variant returns
    (``measure="returned"``: a variant that times its own work, such as a steady state after a setup). Warm-up
    rounds run in the same order as the others would but are not recorded.
    """
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {', '.join(MEASURES)}, not {measure!r}")
    values: dict[str, list[float]] = {name: [] for name in variants}
    orders, load_before, load_after = [], [], []
    for round_index in range(warmup_rounds + rounds):
        recorded = round_index >= warmup_rounds
        names = round_order(list(variants), round_index, order)
        if recorded:
            orders.append(names)
            load_before.append(os.getloadavg()[0])
        for name in names:
            start = time.perf_counter()
            returned = variants[name](round_index)
            seconds = time.perf_counter() - start
            if recorded:
                values[name].append(seconds if measure == "wall_seconds" else float(returned))
        if recorded:
            load_after.append(os.getloadavg()[0])
    return Rounds(values, orders, load_before, load_after)
