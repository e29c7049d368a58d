"""Operations: the ``marconi`` command, settings, wiring, benchmarks."""
