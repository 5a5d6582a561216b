"""bench/timing.py, the interleaved rounds of every speed benchmark: the order each round runs its variants in, which
rounds are recorded, what a call's value is, and the statistic over the rounds."""

from __future__ import annotations

import pytest

from bench import timing
from bench.timing import Rounds, interleaved_rounds, round_order


def test_alternating_rounds_reverse_the_order_every_other_round():
    assert [round_order("abc", index) for index in range(4)] == [list("abc"), list("cba"), list("abc"), list("cba")]


def test_rotating_rounds_start_one_variant_later_every_round():
    assert [round_order("abc", index, "rotate") for index in range(4)] == [
        list("abc"), list("bca"), list("cab"), list("abc"),
    ]  # fmt: skip


def test_an_unknown_order_or_measure_is_refused():
    with pytest.raises(ValueError, match="alternate, rotate"):
        round_order("ab", 0, "shuffle")
    with pytest.raises(ValueError, match="wall_seconds, returned"):
        interleaved_rounds({"a": lambda index: None}, 1, measure="cpu_seconds")


def test_every_round_calls_each_variant_once_in_its_order_with_the_rounds_index():
    calls = []
    variants = {name: lambda index, name=name: calls.append((index, name)) for name in ("a", "b", "c")}
    rounds = interleaved_rounds(variants, 3, order="rotate")
    assert calls == [(0, "a"), (0, "b"), (0, "c"), (1, "b"), (1, "c"), (1, "a"), (2, "c"), (2, "a"), (2, "b")]
    assert rounds.orders == [list("abc"), list("bca"), list("cab")]


def test_warm_up_rounds_run_in_turn_but_are_not_recorded():
    calls = []
    variants = {name: lambda index, name=name: calls.append((index, name)) or 10.0 * index for name in ("a", "b")}
    rounds = interleaved_rounds(variants, 2, warmup_rounds=1, measure="returned")
    assert calls == [(0, "a"), (0, "b"), (1, "b"), (1, "a"), (2, "a"), (2, "b")]
    assert rounds.values == {"a": [10.0, 20.0], "b": [10.0, 20.0]}
    assert rounds.orders == [list("ba"), list("ab")]
    assert len(rounds.load_before) == len(rounds.load_after) == 2


def test_a_calls_value_is_its_wall_clock_seconds(monkeypatch):
    """A clock that moves only inside a call: each variant's seconds are the time its own calls took."""
    clock = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])

    def taking(seconds: float):
        def run(index: int) -> float:
            clock[0] += seconds + index
            return -1.0  # ignored: the wall clock is the measure

        return run

    rounds = interleaved_rounds({"slow": taking(3.0), "fast": taking(1.0)}, 3)
    assert rounds.values == {"slow": [3.0, 4.0, 5.0], "fast": [1.0, 2.0, 3.0]}


def test_medians_and_means_are_taken_over_the_rounds_of_each_variant():
    returned = {"a": [1.0, 2.0, 9.0], "b": [4.0, 6.0, 8.0, 30.0]}
    variants = {name: lambda index, name=name: returned[name][index] for name in returned}
    rounds = interleaved_rounds(variants, 3, measure="returned")
    assert rounds.values == {"a": [1.0, 2.0, 9.0], "b": [4.0, 6.0, 8.0]}  # round 3 of b never ran
    assert rounds.medians() == {"a": 2.0, "b": 6.0}
    assert rounds.means() == {"a": 4.0, "b": 6.0}
    even = Rounds({"a": [1.0, 2.0, 4.0, 100.0]}, [], [], [])
    assert even.medians() == {"a": 3.0} and even.means() == {"a": 26.75}


def test_scaled_rounds_turn_seconds_per_call_into_ms_per_step():
    rounds = Rounds({"a": [0.5, 0.25]}, [["a"], ["a"]], [1.0, 1.0], [2.0, 2.0]).scaled(1000 / 10)
    assert rounds.values == {"a": [50.0, 25.0]} and rounds.medians() == {"a": 37.5}
    assert rounds.orders == [["a"], ["a"]] and rounds.load_after == [2.0, 2.0]
