"""Placeholder until the broker plugin lands."""
