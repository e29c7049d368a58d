"""Structured logs: one JSON object per line, carrying the id of the request being served."""

from __future__ import annotations

import contextvars
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from ops.logs import configure, handler
from ops.settings import Settings, SettingsError, load_settings
from service.middleware import request_id_var
from tests.service.test_metrics import close, observed_app


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Our JSON handler on the root logger, restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    configure("INFO", "json", out)
    yield out
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in saved[0]:
        root.addHandler(h)
    root.setLevel(saved[1])


def lines(out: io.StringIO) -> list[dict]:
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


async def test_access_lines_carry_the_request_id(tmp_path: Path,
                                                 captured: io.StringIO) -> None:
    o = await observed_app(tmp_path, access_log=True)
    try:
        r = await o.client.post("/v2/queues/q/messages", headers=o.headers(),
                                json={"messages": [{"body": 1}]})
        assert r.status_code == 201
        bad = await o.client.get("/v2/queues/q/messages", headers={"Client-ID": "nope"})
        assert bad.status_code == 400
    finally:
        await close(o)
    access = [line for line in lines(captured) if line["logger"] == "marconi.access"]
    assert [a["request_id"] for a in access] == [r.headers["x-openstack-request-id"],
                                                 bad.headers["x-openstack-request-id"]]
    first = access[0]
    assert first["level"] == "INFO"
    assert first["method"] == "POST" and first["status"] == 201
    assert first["route"] == "/v2/queues/{queue_name}/messages"
    assert first["path"] == "/v2/queues/q/messages"
    assert first["duration_ms"] >= 0 and first["time"].endswith("Z")
    assert access[1]["status"] == 400


def test_lines_inside_a_request_get_its_id_and_others_none() -> None:
    out = io.StringIO()
    log = logging.getLogger("marconi.test.logs")
    log.propagate = False
    log.addHandler(handler("json", out))
    log.setLevel(logging.INFO)

    def inside() -> None:
        request_id_var.set("req-1234")
        log.warning("inside %s", "a request", extra={"partition": 3})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")

    contextvars.copy_context().run(inside)
    log.info("outside")
    first, failed, outside = lines(out)
    assert first == {"time": first["time"], "level": "WARNING", "logger": "marconi.test.logs",
                     "message": "inside a request", "request_id": "req-1234", "partition": 3}
    assert failed["request_id"] == "req-1234" and "ValueError: boom" in failed["exception"]
    assert "request_id" not in outside and outside["message"] == "outside"


async def test_no_access_lines_unless_asked(tmp_path: Path, captured: io.StringIO) -> None:
    o = await observed_app(tmp_path)
    try:
        await o.client.get("/v2/queues/q/stats", headers=o.headers())
    finally:
        await close(o)
    assert not [line for line in lines(captured) if line["logger"] == "marconi.access"]


def test_log_settings() -> None:
    assert load_settings(env={"MARCONI_LOG_FORMAT": "json",
                              "MARCONI_ACCESS_LOG": "on"}).log_format == "json"
    assert load_settings(env={"MARCONI_ACCESS_LOG": "on"}).access_log is True
    with pytest.raises(SettingsError):
        Settings(log_format="xml")


def test_text_format_appends_the_request_id() -> None:
    out = io.StringIO()
    log = logging.getLogger("marconi.test.text")
    log.propagate = False
    log.addHandler(handler("text", out))
    contextvars.copy_context().run(lambda: (request_id_var.set("req-9"), log.warning("hi")))
    assert out.getvalue().rstrip().endswith("WARNING marconi.test.text hi [req-9]")
    with pytest.raises(ValueError):
        handler("xml")
