"""The NATS roles the generator derives from a spec: one per service, exactly what it uses."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from generator import subjects
from generator.build import build
from generator.diagnostics import SpecError
from generator.ir import Document, Role
from generator.load import load_spec
from handwritten.runtime.roles import (
    Login,
    parse_violation,
    render_authorization,
    restore_case,
)
from tests.support.specs import SPECS, spec_under_test


def roles(doc: Document) -> dict[str, Role]:
    return {role.name: role for role in doc.roles}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_service_has_exactly_its_own_subjects(name: str) -> None:
    doc = spec_under_test(name).doc
    by_name = roles(doc)
    performed = {key for op in doc.receivers for key in op.sends}
    expected = {"admin"} | {op.consumer.durable for op in doc.receivers if op.consumer}
    expected |= {op.key for op in doc.senders if op.key not in performed}
    assert set(by_name) == expected
    assert by_name["admin"].publish == (">",) and by_name["admin"].subscribe == (">",)
    for op in doc.receivers:
        assert op.consumer is not None
        c = op.consumer
        role = by_name[c.durable]
        own = f"{c.stream}.{c.durable}"
        sends = {doc_op.subject for doc_op in doc.senders if doc_op.key in op.sends}
        streams_written = {
            s.name
            for s in doc.streams
            for subject in {c.dead_letter_subject, *sends}
            if any(subjects.contains(p, subject) for p in s.subjects)
        }
        assert set(role.publish) == {
            f"$JS.API.CONSUMER.INFO.{own}",
            f"$JS.API.CONSUMER.MSG.NEXT.{own}",
            f"$JS.ACK.{own}.>",
            f"$JS.API.STREAM.INFO.{c.stream}",
            f"$JS.API.STREAM.MSG.GET.{c.stream}",
            "$JS.API.STREAM.NAMES",
            c.dead_letter_subject,
            *sends,
            *(f"$JS.API.STREAM.INFO.{s}" for s in streams_written),
        }
        assert set(role.subscribe) == {
            f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{own}",
            f"_INBOX.{c.durable}.>",
        }
        assert role.inbox_prefix == f"_INBOX.{c.durable}"
        # Nothing of another durable, no stream management, no wildcard over other inboxes.
        for subject in (*role.publish, *role.subscribe):
            assert subject not in (">", "$JS.API.>", "_INBOX.>", "$JS.>")
            for verb in ("CREATE", "UPDATE", "DELETE", "PURGE", "LIST"):
                assert f".{verb}." not in subject and not subject.endswith(f".{verb}")
        others = {o.consumer.durable for o in doc.receivers if o.consumer} - {c.durable}
        for other in others:
            assert not any(s.endswith(f".{other}") or f".{other}." in s for s in role.publish)
    for op in doc.senders:
        if op.key in performed:
            continue
        role = by_name[op.key]
        assert op.subject in role.publish
        assert role.subscribe == (f"_INBOX.{op.key}.>",)
        assert not any(s.startswith(("$JS.ACK", "$JS.API.CONSUMER")) for s in role.publish)


def test_the_trash_processor_may_publish_trash_events_through_x_sends() -> None:
    by_name = roles(spec_under_test("filetrash").doc)
    assert "files.trashed" in by_name["trash-processor"].publish
    assert "publishFilePlacedInTrash" not in by_name, "performed by the trash-processor"
    assert "files.trashed" not in by_name["audit-logger"].publish
    assert by_name["publishFileDeleted"].publish == (
        "$JS.API.STREAM.INFO.FILE_EVENTS",
        "$JS.API.STREAM.NAMES",
        "files.deleted",
    )


def _spec(tmp_path: Path, extra_operations: str, sends: str = "") -> Document:
    text = (
        Path(SPECS["filetrash"])
        .read_text(encoding="utf-8")
        .replace("    x-sends: [publishFilePlacedInTrash]\n", sends)
        .replace("\noperations:\n", "\noperations:\n" + textwrap.indent(extra_operations, "  "))
    )
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return build(load_spec(path, "spec.yaml"))[0]


RESTORE_AUDITOR = """\
restoreAuditor:
  action: receive
  channel: {$ref: '#/channels/filesPurged'}
  messages: [{$ref: '#/channels/filesPurged/messages/FilePurgedEvent'}]
  x-jetstream-consumer:
    durable: restore-auditor
    ack_policy: explicit
    dead_letter: deadLetters
"""


def test_a_new_operation_gives_its_service_exactly_the_new_permissions(tmp_path: Path) -> None:
    before = roles(spec_under_test("filetrash").doc)
    after = roles(_spec(tmp_path, RESTORE_AUDITOR, "    x-sends: [publishFilePlacedInTrash]\n"))
    assert set(after) - set(before) == {"restore-auditor"}
    assert {k: v for k, v in after.items() if k != "restore-auditor"} == before
    new = after["restore-auditor"]
    assert "$JS.API.CONSUMER.MSG.NEXT.FILE_EVENTS.restore-auditor" in new.publish
    assert "dlq.files.restore-auditor" in new.publish
    assert "files.purged" not in new.publish, "it receives them, it does not send them"


def test_without_x_sends_a_send_operation_is_a_role_of_its_own(tmp_path: Path) -> None:
    by_name = roles(_spec(tmp_path, ""))
    assert "files.trashed" not in by_name["trash-processor"].publish
    assert "files.trashed" in by_name["publishFilePlacedInTrash"].publish


@pytest.mark.parametrize(
    ("sends", "code"),
    [
        ("    x-sends: [auditLogger]\n", "unknown-send"),
        ("    x-sends: [nope]\n", "unknown-send"),
    ],
)
def test_x_sends_must_name_send_operations(tmp_path: Path, sends: str, code: str) -> None:
    with pytest.raises(SpecError) as error:
        _spec(tmp_path, "", sends)
    assert code in {d.code for d in error.value.diagnostics}


def test_a_role_name_claimed_twice_is_an_error(tmp_path: Path) -> None:
    admin = """\
admin:
  action: send
  channel: {$ref: '#/channels/filesPurged'}
  messages: [{$ref: '#/channels/filesPurged/messages/FilePurgedEvent'}]
"""
    with pytest.raises(SpecError) as error:
        _spec(tmp_path, admin, "    x-sends: [publishFilePlacedInTrash]\n")
    assert "role-collision" in {d.code for d in error.value.diagnostics}


def test_the_server_configuration_quotes_every_subject_and_secret() -> None:
    from generated.permissions import ROLES

    passwords = {name: f'p"w{{{name}}}$x' for name in ROLES}
    text = render_authorization(ROLES, passwords)
    assert '"$JS.API.CONSUMER.MSG.NEXT.FILE_EVENTS.trash-processor"' in text
    assert '"p\\"w{admin}$x"' in text
    assert text.count("user: ") == len(ROLES)


def test_a_refusal_is_read_back_with_its_case() -> None:
    text = 'nats: permissions violation for publish to "$js.api.stream.delete.file_events"'
    action, subject = parse_violation(text) or ("", "")
    assert action == "publish"
    assert restore_case(subject, ["FILE_EVENTS"]) == "$JS.API.STREAM.DELETE.FILE_EVENTS"
    sub = parse_violation('nats: permissions violation for subscription to "_inbox.audit-logger.>"')
    assert sub == ("subscribe", "_inbox.audit-logger.>")
    assert restore_case("_inbox.audit-logger.>", ["_INBOX.audit-logger.>"]) == (
        "_INBOX.audit-logger.>"
    )
    assert parse_violation("nats: stale connection") is None


def test_a_login_never_shows_its_password() -> None:
    login = Login("admin", "s3cret-value", "_INBOX.admin")
    assert "s3cret-value" not in repr(login) and "s3cret-value" not in str(login)
    assert "s3cret-value" not in f"{login}"
