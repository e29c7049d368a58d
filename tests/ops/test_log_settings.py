"""The log's settings: retention, segment size, archive directory, and the duration parser."""

from __future__ import annotations

import pytest

from ops.settings import SettingsError, load_settings, parse_duration


def test_duration_parser() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("10m") == 600
    assert parse_duration("12h") == 12 * 3600
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration(" 2W ") == 14 * 86400
    assert parse_duration("45") == 45
    assert parse_duration("1.5h") == 5400
    for bad in ("", "d", "10x", "-5m", "0s", "nan", "inf", "ten minutes"):
        with pytest.raises(SettingsError, match="log_retention"):
            parse_duration(bad, "log_retention")


def test_log_settings_defaults_and_environment() -> None:
    s = load_settings(env={})
    assert (s.log_retention, s.log_retention_ms) == ("7d", 7 * 86400 * 1000)
    assert s.log_segment_bytes == 64 * 1024 * 1024
    assert s.log_archive_dir is None
    s = load_settings(env={"MARCONI_LOG_RETENTION": "forever",
                           "MARCONI_LOG_SEGMENT_BYTES": "1048576",
                           "MARCONI_LOG_ARCHIVE_DIR": "/archive"})
    assert s.log_retention_ms is None
    assert (s.log_segment_bytes, s.log_archive_dir) == (1048576, "/archive")
    assert load_settings(env={"MARCONI_LOG_RETENTION": "10m"}).log_retention_ms == 600_000


def test_bad_log_settings_are_refused() -> None:
    with pytest.raises(SettingsError, match="log_retention"):
        load_settings(env={"MARCONI_LOG_RETENTION": "a week"})
    with pytest.raises(SettingsError, match="log_segment_bytes"):
        load_settings(env={"MARCONI_LOG_SEGMENT_BYTES": "100"})


def test_zeros_ahead_setting() -> None:
    """``log_preallocate_bytes`` (``MARCONI_LOG_PREALLOCATE_BYTES``): the zeros the log keeps
    ahead of the active segment's records; 0 turns them off."""
    assert load_settings(env={}).log_preallocate_bytes == 1024 * 1024
    s = load_settings(env={"MARCONI_LOG_PREALLOCATE_BYTES": "0"})
    assert s.log_preallocate_bytes == 0
    for bad in ("-1", str(65 << 20)):
        with pytest.raises(SettingsError, match="log_preallocate_bytes"):
            load_settings(env={"MARCONI_LOG_PREALLOCATE_BYTES": bad})
