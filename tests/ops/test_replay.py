"""``marconi replay``: the audited history matches what was done, and point-in-time state
matches what reads showed at that moment."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from log import partition_for
from log.filelog import FileLog
from ops.admin import log_dir, store_dir
from ops.replay import add_arguments, replay
from projections import queries
from projections.commands import (
    Command,
    CreateClaim,
    CreateQueue,
    DeleteMessage,
    NewMessage,
    PopMessages,
    PostMessages,
)
from projections.rocksstore import RocksStore
from projections.runner import Runner

PARTITIONS = 4
T0 = 1_800_000_000_000


def args_for(data: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--data", str(data), "--project", "p", "--queue", "q",
                              "--no-progress", *extra])


async def record_history(data: Path, **log_options: Any
                         ) -> tuple[list[tuple[int, str, dict]], dict[int, dict]]:
    """Run commands through the real write path; remember outcomes and state as seen live."""
    done: list[tuple[int, str, dict]] = []
    seen: dict[int, dict] = {}
    async with FileLog(log_dir(data), PARTITIONS, **log_options) as log:
        store = RocksStore(store_dir(data))
        p = partition_for("p", "q", PARTITIONS)
        async with Runner(log, store, range(PARTITIONS), sweep_interval=0) as runner:
            async def run(cmd: Command) -> None:
                (offset,) = await log.append(partition_for(cmd.project, cmd.queue, PARTITIONS),
                                             [_encode(cmd)])
                await runner.applied(p, offset, timeout=10)
                if cmd.queue == "q":
                    out = queries.outcome(store, p, cmd.id)
                    done.append((offset, cmd.TAG, out))
                    msgs = queries.list_messages(
                        store, p, "p", "q", cmd.time_ms, marker=None, limit=1000,
                        client_id=None, echo=True, include_claimed=True, include_delayed=True)
                    stats = queries.stats(store, p, "p", "q", cmd.time_ms)
                    seen[offset] = {"ids": [m.id for m in msgs],
                                    "total": stats["total"], "claimed": stats["claimed"]}

            t = T0
            await run(CreateQueue(id="c0", project="p", queue="q", client_id="admin", time_ms=t))
            for i in range(30):
                t += 1000
                await run(PostMessages(id=f"post{i}", project="p", queue="q", client_id="prod",
                                       time_ms=t, messages=[NewMessage(id=f"m{i}", body=i)]))
                await run(PostMessages(id=f"noise{i}", project="p", queue="other",
                                       client_id="prod", time_ms=t,
                                       messages=[NewMessage(id=f"n{i}", body=i)]))
            t += 1000
            await run(CreateClaim(id="claim1", project="p", queue="q", client_id="cons",
                                  time_ms=t, claim_id="k1", limit=5))
            await run(DeleteMessage(id="del-ok", project="p", queue="q", client_id="cons",
                                    time_ms=t, message_id="m0", claim_id="k1"))
            await run(DeleteMessage(id="del-refused", project="p", queue="q", client_id="rogue",
                                    time_ms=t, message_id="m1"))
            await run(PopMessages(id="pop", project="p", queue="q", client_id="cons", time_ms=t,
                                  count=3))
        store.close()
    return done, seen


def _encode(cmd: Command) -> bytes:
    from projections.commands import encode

    return encode(cmd)


async def test_history_matches_what_was_done(tmp_path: Path) -> None:
    done, _ = await record_history(tmp_path)
    out = io.StringIO()
    await replay(args_for(tmp_path, "--json"), out)
    entries = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["offset"], e["command"]) for e in entries] == [(o, t) for o, t, _ in done]
    by_offset = {e["offset"]: e for e in entries}
    for offset, _, outcome in done:
        replayed = by_offset[offset]["outcome"]
        if "messages" in outcome:
            assert replayed["messages"] == [m["id"] for m in outcome["messages"]]
        else:
            assert replayed == outcome
    claim = next(e for e in entries if e["command"] == "claim.create")
    assert claim["outcome"]["messages"] == ["m0", "m1", "m2", "m3", "m4"]
    assert claim["client_id"] == "cons" and claim["args"]["claim_id"] == "k1"
    refused = next(e for e in entries if e["client_id"] == "rogue")
    assert refused["outcome"]["error"] == "claimed"
    assert all(e["queue"] == "q" and e["project"] == "p" for e in entries)


async def test_since_until_and_the_table(tmp_path: Path) -> None:
    await record_history(tmp_path)
    out = io.StringIO()
    await replay(args_for(tmp_path, "--since", str((T0 + 5000) / 1000),
                          "--until", str((T0 + 9000) / 1000)), out)
    lines = out.getvalue().splitlines()
    assert lines[-1] == "5 commands on p/q"
    assert sum("messages.post" in line for line in lines) == 5


async def test_point_in_time_state_equals_what_reads_showed(tmp_path: Path) -> None:
    done, seen = await record_history(tmp_path)
    for offset, tag, _ in done:
        if tag not in ("claim.create", "messages.pop", "message.delete"):
            continue
        out = io.StringIO()
        await replay(args_for(tmp_path, "--state", "--at-offset", str(offset)), out)
        state = orjson.loads(out.getvalue())
        assert [m["id"] for m in state["messages"]] == seen[offset]["ids"]
        assert state["stats"]["total"] == seen[offset]["total"]
        assert state["stats"]["claimed"] == seen[offset]["claimed"]


async def test_replay_reads_beside_a_live_writer(tmp_path: Path) -> None:
    await record_history(tmp_path)
    async with FileLog(log_dir(tmp_path)):  # the "server" holds the log open for writing
        out = io.StringIO()
        await replay(args_for(tmp_path, "--json"), out)
        assert len(out.getvalue().splitlines()) == 1 + 30 + 4


async def test_an_archived_history_replays_with_archive(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    """Retention moved the queue's oldest segments to the archive: without ``--archive`` the
    full replay fails in one line; with it, the replay equals the one taken before the cut."""
    archive = tmp_path / "archive"
    await record_history(tmp_path, segment_bytes=1500, archive_dir=archive)
    whole = io.StringIO()
    await replay(args_for(tmp_path, "--json"), whole)
    p = partition_for("p", "q", PARTITIONS)
    async with FileLog(log_dir(tmp_path), archive_dir=archive) as log:
        cut = await log.retain(p, await log.end_offset(p), 2**62)
    assert cut.archived and cut.start_offset > 0

    assert await replay(args_for(tmp_path, "--json"), io.StringIO()) == 1
    err = capsys.readouterr().err
    assert "not retained before offset" in err and "--archive DIR" in err
    archived = io.StringIO()
    assert await replay(args_for(tmp_path, "--json", "--archive", str(archive)), archived) == 0
    assert archived.getvalue() == whole.getvalue()
    state = io.StringIO()
    assert await replay(args_for(tmp_path, "--state", "--at-offset", "5", "--archive",
                                 str(archive)), state) == 0
    assert orjson.loads(state.getvalue())["stats"]["total"] >= 1


async def test_a_hole_in_the_archive_is_an_error_not_a_skip(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    archive = tmp_path / "archive"
    await record_history(tmp_path, segment_bytes=1500, archive_dir=archive)
    p = partition_for("p", "q", PARTITIONS)
    async with FileLog(log_dir(tmp_path), archive_dir=archive) as log:
        await log.retain(p, await log.end_offset(p), 2**62)
    segments = sorted((archive / f"p{p:04d}").glob("*.seg.gz"))
    assert len(segments) >= 3
    segments[1].unlink()
    assert await replay(args_for(tmp_path, "--json", "--archive", str(archive)),
                        io.StringIO()) == 1
    assert "a hole" in capsys.readouterr().err
