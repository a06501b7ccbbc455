"""Rounds interleave the contenders, and each round starts one further along: over the rounds
every contender runs in every position alike."""

from __future__ import annotations

from tests.bench.harness import in_turn


def test_each_round_starts_one_further_along() -> None:
    contenders = ["ceiling", "raw", "faststream", "filetrash"]
    orders = [in_turn(contenders, round_) for round_ in range(1, 5)]
    assert orders[0] == contenders
    assert orders[1] == ["raw", "faststream", "filetrash", "ceiling"]
    for position in range(len(contenders)):  # each contender once in each position
        assert sorted(order[position] for order in orders) == sorted(contenders)
    assert in_turn(contenders, 5) == contenders
    assert in_turn([], 3) == []
