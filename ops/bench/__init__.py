"""Benchmarks: they print figures; tests assert behaviour, benchmarks report numbers."""
