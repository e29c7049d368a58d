"""Duration settings: ``snapshot_interval`` goes through the one duration parser."""

from __future__ import annotations

import pytest

from ops.settings import SettingsError, load_settings


@pytest.mark.parametrize("text", ["", "10x", "m", "-5s", "ten minutes", "1d2h", "forever"])
def test_bad_durations_name_the_setting(text: str) -> None:
    with pytest.raises(SettingsError, match="MARCONI_SNAPSHOT_INTERVAL"):
        load_settings(env={"MARCONI_SNAPSHOT_INTERVAL": text})


def test_snapshot_settings_from_env_and_default() -> None:
    assert load_settings(env={}).snapshot_interval == 600.0
    settings = load_settings(env={"MARCONI_SNAPSHOT_INTERVAL": "2m",
                                  "MARCONI_SNAPSHOT_KEEP": "5"})
    assert (settings.snapshot_interval, settings.snapshot_keep) == (120.0, 5)
    assert load_settings(env={"MARCONI_SNAPSHOT_INTERVAL": "90s"}).snapshot_interval == 90.0
    with pytest.raises(SettingsError, match="snapshot_keep"):
        load_settings(env={"MARCONI_SNAPSHOT_KEEP": "0"})
