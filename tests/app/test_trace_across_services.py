"""One request followed across services: each deletion's W3C traceparent (set by the
publisher) travels to its trash event and to the dead letter of a poison message, and the
trash-processor's JSON log lines for it carry its trace id. Real processes, real servers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from handwritten.filetrash import ids, reconcile
from handwritten.runtime.deadletter import REASON_HEADER
from tests.app.service_harness import Servers, ServiceProcess, provisioned, wait_until
from tests.support.servers import NatsServer

pytestmark = pytest.mark.integration
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-[0-9a-f]{16}-01")


@pytest.fixture
async def servers(nats_server: NatsServer, database_url: str) -> AsyncIterator[Servers]:
    async with provisioned(nats_server.url, database_url) as servers:
        yield servers


async def test_a_deletion_s_trace_reaches_its_trash_event_dead_letter_and_logs(
    servers: Servers, tmp_path: Path
) -> None:
    process = ServiceProcess("trash-processor", servers.env(), tmp_path / "tp.log")
    try:
        published = await servers.publish(5, seed=3)
        poison_trace = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
        await servers.js.publish(
            "files.deleted", b"{not json", headers={"traceparent": poison_trace}
        )
        deletions = [p.event.event_id for p in published]

        async def done() -> bool:
            counts = await servers.counts(deletions)
            letters = await reconcile.scan(servers.js, stream="FILE_EVENTS_DLQ", subject=">")
            return counts.trash_events_marked == 5 and any(
                m.headers.get("traceparent") == poison_trace for m in letters
            )

        await wait_until(done, timeout=30, what="5 trash events and the poison's dead letter")
    finally:
        assert await process.terminate() == 0, process.output()
    deleted = await reconcile.scan(servers.js, stream="FILE_EVENTS", subject="files.deleted")
    trashed = await reconcile.scan(servers.js, stream="FILE_EVENTS", subject="files.trashed")
    trace_of_deletion = {
        m.event_id(): m.headers.get("traceparent") for m in deleted if m.event_id()
    }
    trace_of_trash_event = {m.event_id(): m.headers.get("traceparent") for m in trashed}
    traces = set()
    for deletion in deletions:
        sent = trace_of_deletion[str(deletion)]
        assert sent is not None and TRACEPARENT.fullmatch(sent)
        assert trace_of_trash_event[str(ids.trash_event_id(deletion))] == sent
        traces.add(sent)
    assert len(traces) == 5  # one trace per request
    letters = await reconcile.scan(servers.js, stream="FILE_EVENTS_DLQ", subject=">")
    letter = next(m for m in letters if m.headers.get("traceparent") == poison_trace)
    assert letter.headers[REASON_HEADER] == "invalid-json"
    logged = set()
    for line in process.log_lines():
        logged.update([line.get("trace_id"), *line.get("trace_ids", [])])
    for sent in traces:
        match = TRACEPARENT.fullmatch(sent)
        assert match is not None and match.group(1) in logged
