"""The event id's canonical encoding (orjson, UTF-8) and the event built as its JSON form."""

from __future__ import annotations

import hashlib
import json
import uuid

import orjson

from processor import codec
from processor.core import EntitlementCatalog, decide_event, event_id
from processor.core.detect import uuid_text
from processor.models import Operation
from tests.helpers import event_model
from tests.unit.conftest import SOURCE_ID, make_account, make_policy

BEFORE = {"title": "Manager", "department": "Sales"}
AFTER = {"title": "Leiterin Vertrieb \u00e9\u4e2d", "department": "Support"}


def _expected(body: dict[str, object], context: str) -> str:
    payload = orjson.dumps(body, option=orjson.OPT_SORT_KEYS) + b"\x00" + context.encode()
    return str(uuid.UUID(bytes=hashlib.sha256(payload).digest()[:16], version=5))


def test_event_id_hashes_sorted_utf8_json_without_the_id() -> None:
    """The id is sha256 over the body's sorted-key JSON with text as UTF-8, ``id`` left out."""
    body = {"b": "\u00e9", "a": [1, 2.5], "id": "ignored"}
    assert event_id(body, "agg") == _expected({"a": [1, 2.5], "b": "\u00e9"}, "agg")
    assert event_id(body, "agg") == event_id({"id": "other", "a": [1, 2.5], "b": "\u00e9"}, "agg")


def test_event_id_of_an_ascii_body_is_the_one_before_issue_14() -> None:
    """An ASCII-only body keeps the id the standard library's ensure_ascii JSON gave."""
    body = {"name": "title", "values": [1, None, True, "x"]}
    old = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.sha256(old.encode("ascii") + b"\x00" + b"ctx").digest()
    assert event_id(body, "ctx") == str(uuid.UUID(bytes=digest[:16], version=5))


def test_event_id_of_bodies_orjson_refuses_is_deterministic() -> None:
    """A body with an integer beyond 64 bits or a lone surrogate still gets one stable id."""
    big = {"value": 2**70}
    lone = {"value": "\ud800"}
    assert event_id(big, "") == event_id(dict(big), "")
    assert event_id(lone, "") == event_id(dict(lone), "")
    assert event_id(big, "") != event_id({"value": 2**70 + 1}, "")


def test_a_built_event_is_its_models_json_form_with_its_id_last() -> None:
    """A decided event's body is what its model dumps (same bytes, field order too), and its
    id, the last field, is the id of that body."""
    previous, current = make_account(attributes=BEFORE), make_account(attributes=AFTER)
    event = decide_event(make_policy(), previous, current, EntitlementCatalog(), context="agg")
    assert event is not None
    dumped = event_model(event).model_dump(mode="json")
    assert codec.dumps(event.body) == codec.dumps(dumped)
    assert list(event.body)[-1] == "id"
    assert event.body["id"] == event.id == event_id(dumped, "agg")


def test_an_event_names_its_operation_source_and_account_from_its_body() -> None:
    """The event's operation, source id, nativeIdentity and uuid are those its body holds."""
    previous = make_account("CN=Ann", attributes=BEFORE, uuid="{u-1}")
    event = decide_event(make_policy(), previous, None, EntitlementCatalog())
    assert event is not None
    assert event.operation is Operation.ACCOUNT_DELETED
    assert event.body["eventType"] == "ACCOUNT_DELETED"
    assert (event.source_id, event.native_identity, event.uuid) == (SOURCE_ID, "CN=Ann", "{u-1}")


def test_uuid_text_is_the_standard_librarys_version_5_uuid() -> None:
    """uuid_text writes exactly what uuid.UUID(bytes=..., version=5) writes."""
    for n in range(300):
        digest = hashlib.sha256(n.to_bytes(4, "big")).digest()
        assert uuid_text(digest) == str(uuid.UUID(bytes=digest[:16], version=5))
    for edge in (b"\x00" * 32, b"\xff" * 32):
        assert uuid_text(edge) == str(uuid.UUID(bytes=edge[:16], version=5))
