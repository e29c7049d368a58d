"""Settings: defaults, TOML file, environment, flags — in that order of precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.settings import Settings, SettingsError, TokenGrant, load_settings


def test_defaults_follow_zaqar() -> None:
    s = load_settings(env={})
    assert (s.host, s.port, s.partitions, s.auth) == ("127.0.0.1", 8888, 16, "none")
    assert (s.max_messages_post_size, s.max_queue_metadata, s.max_message_ttl) == (
        262144, 65536, 1209600)
    assert (s.default_claim_ttl, s.default_claim_grace, s.client_id_uuid_safe) == (
        300, 60, "strict")
    assert s.secret_key is None and s.admin_mode is False
    assert s.limits().as_dict()["default_message_ttl"] == 3600


def test_file_env_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "marconi.toml"
    config.write_text('port = 9000\nadmin_mode = true\nsecret_key = "k"\n'
                      'subscriber_types = ["http"]\n'
                      '[tokens.abc]\nproject = "p"\nroles = ["admin"]\n')
    s = load_settings(config, env={"MARCONI_PORT": "9100", "MARCONI_ENABLE_CHECKSUM": "yes",
                                   "MARCONI_MAX_CLAIM_TTL": "100", "OTHER": "x"},
                      host="0.0.0.0", port=None)
    assert (s.port, s.host, s.admin_mode, s.secret_key) == (9100, "0.0.0.0", True, "k")
    assert s.enable_checksum is True and s.max_claim_ttl == 100
    assert s.subscriber_types == ("http",)
    assert s.tokens == {"abc": TokenGrant(project="p", roles=("admin",))}
    s = load_settings(config, env={}, port=9200)
    assert s.port == 9200


def test_tokens_from_env() -> None:
    s = load_settings(env={"MARCONI_AUTH": "token",
                           "MARCONI_TOKENS": '{"t": {"roles": "admin,member", '
                                             '"any_project": true}}'})
    assert s.tokens == {"t": TokenGrant(project=None, roles=("admin", "member"),
                                        any_project=True)}


@pytest.mark.parametrize("env", [
    {"MARCONI_PORT": "eighty"}, {"MARCONI_ADMIN_MODE": "perhaps"},
    {"MARCONI_AUTH": "keystone"}, {"MARCONI_CLIENT_ID_UUID_SAFE": "lax"},
    {"MARCONI_PARTITIONS": "0"}, {"MARCONI_TOKENS": "[1]"},
])
def test_bad_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        load_settings(env=env)


def test_bad_file(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("unknown_key = 1\n")
    with pytest.raises(SettingsError, match="unknown"):
        load_settings(config, env={})
    config.write_text("port = [")
    with pytest.raises(SettingsError, match="TOML"):
        load_settings(config, env={})
    with pytest.raises(SettingsError):
        load_settings(tmp_path / "missing.toml", env={})


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]
