"""The spec's NATS roles on a real nats-server with authorization on: each service can do its
work under its own role, and everything else is refused by the server and reported by the
runtime as one `PermissionRefused` naming the role and the subject."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nats.errors
import pytest
from nats.aio.client import Client

from generated.consumers import TRASH_PROCESSOR
from generated.models import FileDeletedEvent
from generated.permissions import ROLES
from generated.topology import CONSUMERS, STREAMS
from handwritten.runtime.connect import connect_nats
from handwritten.runtime.consume import ConsumeSettings, StreamingPull, run_consumer
from handwritten.runtime.contract import Delivery
from handwritten.runtime.jetstream import JetStreamPublisher
from handwritten.runtime.provision import provision_servers
from handwritten.runtime.roles import (
    ADMIN,
    ROLE_ENV,
    PermissionRefused,
    RefusalWatch,
    ensure_passwords,
    render_authorization,
)
from handwritten.runtime.servers import NATS_CREDENTIALS_ENV, ServerUrls
from tests.support.servers import NatsServer

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
STREAM = "FILE_EVENTS"


def deletion() -> bytes:
    event_id = str(uuid.uuid4())
    return json.dumps(
        {
            "eventId": event_id,
            "eventType": "FileDeletedEvent",
            "timestamp": "2026-12-03T10:00:00Z",
            "data": {
                "fileId": str(uuid.uuid4()),
                "fileName": "report.pdf",
                "filePath": "/home/user-001/report.pdf",
                "fileSize": 1024,
                "mimeType": "application/pdf",
                "userId": "user-001",
                "deletedAt": "2026-12-03T10:00:00Z",
            },
        }
    ).encode()


@pytest.fixture
async def secured(
    nats_server_factory: Callable[..., NatsServer], tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> AsyncIterator[ServerUrls]:
    """A nats-server with the spec's roles, provisioned by the admin role."""
    credentials = tmp_path / "nats-credentials.json"
    passwords = ensure_passwords(credentials, ROLES)
    server = nats_server_factory(extra_config=render_authorization(ROLES, passwords))
    urls = ServerUrls(server.url, None, "env", credentials)
    await provision_servers(urls, STREAMS, CONSUMERS, apply=True, echo=lambda _text: None)
    yield urls


async def as_role(urls: ServerUrls, role: str, watch: RefusalWatch) -> Client:
    return await connect_nats(
        urls.nats_url, name=f"test {role}", login=urls.login(role), on_refused=watch
    )


async def refusal(watch: RefusalWatch, timeout: float = 5.0) -> PermissionRefused:
    async with asyncio.timeout(timeout):
        while watch.refused is None:
            await asyncio.sleep(0.02)
    return watch.refused


class Recorder:
    """A trash-processor handler that also publishes its trash event, as the real one does."""

    def __init__(self, nc: Client) -> None:
        self.publisher = JetStreamPublisher(nc.jetstream())
        self.seen: list[FileDeletedEvent] = []

    async def on_file_deleted_event(self, event: FileDeletedEvent, delivery: Delivery) -> None:
        self.seen.append(event)
        await self.publisher.publish(
            "files.trashed", b"{}", msg_id=f"trashed-{event.event_id}", headers=None
        )


async def test_a_service_does_all_its_work_under_its_own_role(secured: ServerUrls) -> None:
    admin = await as_role(secured, ADMIN, RefusalWatch())
    watch = RefusalWatch()
    nc = await as_role(secured, "trash-processor", watch)
    try:
        publisher = JetStreamPublisher(admin.jetstream())
        await publisher.publish("files.deleted", deletion(), msg_id=str(uuid.uuid4()))
        await publisher.publish("files.deleted", b"not json", msg_id=str(uuid.uuid4()))
        handler = Recorder(nc)
        stop = asyncio.Event()
        settings = ConsumeSettings(fetch_timeout=1.0)
        running = asyncio.create_task(
            run_consumer(nc, TRASH_PROCESSOR, handler, settings=settings, stop=stop)
        )
        js = admin.jetstream()
        async with asyncio.timeout(20):
            while True:
                info = await js.consumer_info(STREAM, "trash-processor")
                if info.num_pending == 0 and info.num_ack_pending == 0 and handler.seen:
                    break
                await asyncio.sleep(0.05)
        stop.set()
        stats = await running
        # Pulled, acked, published its trash event, dead-lettered the poison: all allowed.
        assert stats.acked == 1 and stats.dead_lettered == 1
        assert (await js.stream_info("FILE_EVENTS_DLQ")).state.messages == 1
        assert (await js.stream_info(STREAM, subjects_filter="files.trashed")).state.subjects
        assert watch.refused is None, watch.refused
    finally:
        await nc.close()
        await admin.close()


async def test_a_publish_outside_the_role_is_refused(secured: ServerUrls) -> None:
    watch = RefusalWatch()
    nc = await as_role(secured, "trash-processor", watch)
    try:
        publisher = JetStreamPublisher(nc.jetstream(), timeout=1.0)
        started = asyncio.get_running_loop().time()
        with pytest.raises(PermissionRefused) as raised:
            await publisher.publish("files.purged", b"{}", msg_id="x")
        # Not retried for the publisher's retry_for: the first unanswered attempt ends it.
        assert asyncio.get_running_loop().time() - started < 3
        refused = await refusal(watch)
        assert raised.value is refused
        assert (refused.role, refused.action, refused.subject) == (
            "trash-processor",
            "publish",
            "files.purged",
        )
        assert "'trash-processor'" in str(refused) and "files.purged" in str(refused)
    finally:
        await nc.close()


async def test_pulling_another_durable_is_refused(secured: ServerUrls) -> None:
    watch = RefusalWatch()
    nc = await as_role(secured, "trash-processor", watch)
    try:
        pull = await StreamingPull(nc, STREAM, "audit-logger").start()
        with pytest.raises(nats.errors.TimeoutError):
            await pull.fetch(1, timeout=0.5)
        refused = await refusal(watch)
        assert refused.subject == "$JS.API.CONSUMER.MSG.NEXT.FILE_EVENTS.audit-logger"
        assert refused.role == "trash-processor"
        await pull.close()
    finally:
        await nc.close()


async def test_acking_another_durables_message_is_refused(secured: ServerUrls) -> None:
    admin = await as_role(secured, ADMIN, RefusalWatch())
    watch = RefusalWatch()
    nc = await as_role(secured, "trash-processor", watch)
    try:
        js = admin.jetstream()
        await JetStreamPublisher(js).publish("files.deleted", deletion(), msg_id="ack-me")
        sub = await js.pull_subscribe_bind("audit-logger", stream=STREAM)
        [msg] = await sub.fetch(1, timeout=5)
        assert msg.reply.startswith("$JS.ACK.FILE_EVENTS.audit-logger.")
        await nc.publish(msg.reply, b"+ACK")
        refused = await refusal(watch)
        assert refused.action == "publish"
        assert refused.subject.startswith("$JS.ACK.FILE_EVENTS.audit-logger.")
        info = await js.consumer_info(STREAM, "audit-logger")
        assert info.num_ack_pending == 1, "the refused ack must not have reached the server"
    finally:
        await nc.close()
        await admin.close()


async def test_reading_another_durable_or_managing_streams_is_refused(
    secured: ServerUrls,
) -> None:
    for request, subject in (
        (
            lambda js: js.consumer_info(STREAM, "audit-logger", timeout=0.5),
            "$JS.API.CONSUMER.INFO.FILE_EVENTS.audit-logger",
        ),
        (
            lambda js: js.delete_stream(STREAM),
            "$JS.API.STREAM.DELETE.FILE_EVENTS",
        ),
        (
            lambda js: js.delete_consumer(STREAM, "trash-processor"),
            "$JS.API.CONSUMER.DELETE.FILE_EVENTS.trash-processor",
        ),
        (
            lambda js: js.purge_stream(STREAM),
            "$JS.API.STREAM.PURGE.FILE_EVENTS",
        ),
    ):
        watch = RefusalWatch()
        nc = await as_role(secured, "trash-processor", watch)
        try:
            js = nc.jetstream(timeout=0.5)
            with pytest.raises((nats.errors.TimeoutError, TimeoutError)):
                await request(js)
            refused = await refusal(watch)
            assert (refused.role, refused.subject) == ("trash-processor", subject)
        finally:
            await nc.close()
    admin = await as_role(secured, ADMIN, RefusalWatch())
    try:
        assert (await admin.jetstream().consumer_info(STREAM, "trash-processor")).name
    finally:
        await admin.close()


async def test_another_roles_replies_and_raw_subjects_cannot_be_subscribed(
    secured: ServerUrls,
) -> None:
    for subject in ("_INBOX.audit-logger.>", "files.>", "_INBOX.>"):
        watch = RefusalWatch()
        nc = await as_role(secured, "trash-processor", watch)
        try:
            await nc.subscribe(subject)
            refused = await refusal(watch)
            assert (refused.action, refused.subject) == ("subscribe", subject)
        finally:
            await nc.close()


async def test_provisioning_works_only_with_the_admin_role(
    secured: ServerUrls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ROLE_ENV, "trash-processor")
    with pytest.raises(PermissionRefused) as refused:
        await provision_servers(secured, STREAMS, CONSUMERS, apply=True, echo=lambda _t: None)
    assert refused.value.role == "trash-processor"
    assert refused.value.subject.startswith("$JS.API.")
    monkeypatch.delenv(ROLE_ENV)
    plan = await provision_servers(secured, STREAMS, CONSUMERS, apply=True, echo=lambda _t: None)
    assert not plan.has_changes


def run_cli(*args: str, env: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handwritten.cli", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


async def test_a_command_under_another_role_stops_with_one_clear_line(
    secured: ServerUrls, database_url: str
) -> None:
    assert secured.nats_credentials is not None
    secret = json.loads(secured.nats_credentials.read_text())["roles"]["audit-logger"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FILETRASH_", "NATS_"))},
        "NATS_URL": secured.nats_url,
        "DATABASE_URL": database_url,
        NATS_CREDENTIALS_ENV: str(secured.nats_credentials),
    }
    admin = await asyncio.to_thread(run_cli, "provision", env=env)  # the tables, as admin
    assert admin.returncode == 0, admin.stdout + admin.stderr
    env[ROLE_ENV] = "audit-logger"
    for command, subject in (
        (("provision",), "$JS.API.CONSUMER.INFO.FILE_EVENTS.analytics-service"),
        (("run", "notification-service"), "$JS.API.CONSUMER.INFO.FILE_EVENTS.notification-service"),
    ):
        result = await asyncio.to_thread(run_cli, *command, env=env)
        output = result.stdout + result.stderr
        assert result.returncode == 2, output
        assert "Traceback" not in output and secret not in output
        errors = [line for line in output.splitlines() if "NATS refused" in line]
        assert len(errors) == 1, output
        assert f"NATS refused role 'audit-logger' to publish to {subject}:" in errors[0], output
        assert "retry" not in output.lower().replace("retried", ""), output


def test_credentials_are_private(tmp_path: Path) -> None:
    path = tmp_path / "creds.json"
    first = ensure_passwords(path, ROLES)
    assert path.stat().st_mode & 0o777 == 0o600
    assert set(first) == set(ROLES) and len(set(first.values())) == len(ROLES)
    assert ensure_passwords(path, ROLES) == first, "kept across `filetrash up`s"
    fewer = ensure_passwords(path, [ADMIN, "new-role"])
    assert fewer[ADMIN] == first[ADMIN] and set(fewer) == {ADMIN, "new-role"}


class PublishesOutsideItsRole:
    """A trash-processor handler that publishes where its role may not (files.purged)."""

    def __init__(self, nc: Client) -> None:
        self.publisher = JetStreamPublisher(nc.jetstream(), timeout=1.0)
        self.calls = 0

    async def on_file_deleted_event(self, event: FileDeletedEvent, delivery: Delivery) -> None:
        self.calls += 1
        await self.publisher.publish("files.purged", b"{}", msg_id=f"p-{event.event_id}")


async def test_a_handler_publishing_outside_its_role_stops_the_service_once(
    secured: ServerUrls, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await as_role(secured, ADMIN, RefusalWatch())
    stop = asyncio.Event()
    watch = RefusalWatch(lambda _refusal: stop.set())  # as `filetrash run` wires it
    nc = await as_role(secured, "trash-processor", watch)
    try:
        publisher = JetStreamPublisher(admin.jetstream())
        for i in range(3):
            await publisher.publish("files.deleted", deletion(), msg_id=f"outside-{i}")
        handler = PublishesOutsideItsRole(nc)
        settings = ConsumeSettings(fetch_timeout=1.0, batch_size=1)
        async with asyncio.timeout(20):
            await run_consumer(nc, TRASH_PROCESSOR, handler, settings=settings, stop=stop)
        assert watch.refused is not None
        assert (watch.refused.role, watch.refused.subject) == ("trash-processor", "files.purged")
        assert handler.calls == 1, "stopped at the first refusal: no retry storm"
        retries = [r for r in caplog.records if "failed on delivery" in r.getMessage()]
        assert not retries, "the refusal is the one error: no retry warning beside it"
        info = await admin.jetstream().consumer_info(STREAM, "trash-processor")
        assert info.num_pending + info.num_ack_pending == 3, "nothing was acked"
    finally:
        await nc.close()
        await admin.close()
