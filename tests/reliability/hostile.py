"""Hypothesis strategies for hostile input: bytes, broken JSON, nesting, huge and odd values."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

SOURCE_ID = "src-hostile"

#: Characters that break naive code: surrogates, NUL, RTL marks, combining marks, emoji.
ODD_TEXT = st.text(
    alphabet=st.sampled_from(
        ["\x00", "\u202e", "\u200f", "\u0301", "\u0308", "\ufeff", "\U0001f600", "a", "\n", '"']
    )
    | st.characters(),
    max_size=40,
)


def nested(depth: int) -> bytes:
    """A JSON array nested ``depth`` deep (orjson refuses past 1024 levels)."""
    return b"[" * depth + b"]" * depth


def lone_surrogate() -> bytes:
    """A JSON string holding an unpaired UTF-16 surrogate escape."""
    return b'{"type": "account", "sourceId": "\\ud800"}'


def account_record(attributes: Any, native_identity: Any = "CN=x") -> dict[str, Any]:
    return {
        "type": "account",
        "sourceId": SOURCE_ID,
        "aggregationId": "agg-h",
        "account": {"nativeIdentity": native_identity, "attributes": attributes},
        "deleted": False,
    }


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ODD_TEXT
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(ODD_TEXT, inner, max_size=5),
    max_leaves=20,
)


@st.composite
def hostile_values(draw: st.DrawFn) -> bytes:
    """One hostile record value (never a valid aggregation record by accident, or harmless)."""
    kind = draw(st.sampled_from(["bytes", "truncated", "deep", "types", "unicode", "wide"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "truncated":
        whole = json.dumps(account_record({"title": draw(ODD_TEXT)})).encode()
        return whole[: draw(st.integers(0, len(whole) - 1))]
    if kind == "deep":
        return nested(draw(st.integers(1000, 100_000)))
    if kind == "types":
        record = account_record(draw(JSON_VALUES), draw(JSON_VALUES))
        record[draw(st.sampled_from(["type", "sourceId", "deleted", "account"]))] = draw(
            JSON_VALUES
        )
        return json.dumps(record).encode()
    if kind == "unicode":
        return draw(st.sampled_from([lone_surrogate(), b"\xff\xfe\x00", "\u202e{}".encode()]))
    width = draw(st.integers(1000, 20_000))
    return json.dumps(account_record({"memberOf": [f"g{i}" for i in range(width)]}, None)).encode()
