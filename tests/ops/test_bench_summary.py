"""``bench compare`` prints medians with ratios to the first server and, with several rounds,
every round's figures in order (``ops/bench/compare.summary``)."""

from __future__ import annotations

from ops.bench.compare import summary


def _row(text: str, figure: str) -> list[str]:
    (line,) = [ln for ln in text.splitlines() if ln.strip().startswith(figure)]
    return line.split()


def test_medians_ratios_and_every_round() -> None:
    runs = {"marconi": [{"req/s": 3000.0, "p99": 9.0}, {"req/s": 2000.0, "p99": 14.0},
                        {"req/s": 2600.0, "p99": 11.0}],
            "zaqar": [{"req/s": 900.0, "p99": 30.0}, {"req/s": 1000.0, "p99": 25.0},
                      {"req/s": 800.0, "p99": 35.0}]}
    text = summary(runs, 10.0)
    medians, rounds = text.split("each round, in order")
    assert "medians of 3 alternating round(s), 10 s per phase" in medians
    assert _row(medians, "req/s") == ["req/s", "2,600.0", "900.0", "2.89"]
    assert _row(medians, "p99") == ["p99", "11.0", "30.0", "0.37"]
    assert _row(rounds, "req/s") == ["req/s", "3,000.0", "/", "2,000.0", "/", "2,600.0",
                                     "900.0", "/", "1,000.0", "/", "800.0"]


def test_one_round_prints_no_round_table_and_a_missing_figure_has_no_ratio() -> None:
    runs = {"marconi": [{"req/s": 3000.0, "core": 200.0}], "floor": [{"req/s": 6000.0}]}
    text = summary(runs, 5.0)
    assert "each round" not in text
    assert _row(text, "req/s") == ["req/s", "3,000.0", "6,000.0", "0.50"]
    assert _row(text, "core") == ["core", "200.0", "nan", "-"]
