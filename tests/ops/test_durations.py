"""Duration settings: one parser for ``snapshot_interval`` (and the log's retention)."""

from __future__ import annotations

import pytest

from ops.settings import SettingsError, load_settings, parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90.0), ("10m", 600.0), ("12h", 43200.0), ("7d", 604800.0), ("1w", 604800.0),
    ("250ms", 0.25), ("45", 45.0), (" 2m ", 120.0), ("1.5h", 5400.0), (30, 30.0),
])
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_forever_only_where_allowed() -> None:
    assert parse_duration("forever", allow_forever=True) is None
    with pytest.raises(SettingsError, match="forever"):
        parse_duration("forever", name="snapshot_interval")


@pytest.mark.parametrize("text", ["", "10x", "m", "-5s", "ten minutes", "1d2h"])
def test_bad_durations_name_the_setting(text: str) -> None:
    with pytest.raises(SettingsError, match="MARCONI_SNAPSHOT_INTERVAL"):
        load_settings(env={"MARCONI_SNAPSHOT_INTERVAL": text})


def test_snapshot_settings_from_env_and_default() -> None:
    assert load_settings(env={}).snapshot_interval == 600.0
    settings = load_settings(env={"MARCONI_SNAPSHOT_INTERVAL": "2m",
                                  "MARCONI_SNAPSHOT_KEEP": "5"})
    assert (settings.snapshot_interval, settings.snapshot_keep) == (120.0, 5)
    with pytest.raises(SettingsError, match="snapshot_keep"):
        load_settings(env={"MARCONI_SNAPSHOT_KEEP": "0"})
