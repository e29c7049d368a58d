"""Shared fixtures: real parts only (a real broker, real RocksDB, real processes)."""

pytest_plugins = ["tests.support.broker"]
