"""Hypothesis strategies for hostile input: bytes, broken JSON, nesting, huge and odd values."""

from __future__ import annotations

import json
from dataclasses import dataclass
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
    kinds = ["bytes", "truncated", "deep", "deep-field", "types", "unicode", "wide"]
    kind = draw(st.sampled_from(kinds))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "truncated":
        whole = json.dumps(account_record({"title": draw(ODD_TEXT)})).encode()
        return whole[: draw(st.integers(0, len(whole) - 1))]
    if kind == "deep":
        return nested(draw(st.integers(1000, 100_000)))
    if kind == "deep-field":  # decodes (up to 1,024 levels) but may not encode (254)
        where = draw(st.sampled_from(["attribute", "account field", "record field"]))
        record = account_record({"title": DEEP if where == "attribute" else "x"})
        if where == "account field":
            record["account"]["extra"] = DEEP
        elif where == "record field":
            record["extra"] = DEEP
        return _with_deep(record, draw(st.integers(200, 1100)))
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


#: A value of each JSON type, for "wrong type at every field".
WRONG_TYPES: dict[str, Any] = {
    "null": None,
    "int": 7,
    "float": 1.5,
    "bool": True,
    "list": [],
    "object": {},
    "string": "s",
}
#: Which wrong-typed values each field of an account record accepts (the rest are poison).
ACCEPTED_TYPES: dict[str, set[str]] = {
    "type": set(),
    "sourceId": set(),
    "aggregationId": set(),
    "deleted": set(),
    "account": set(),
    "account.nativeIdentity": {"string"},
    "account.uuid": {"null", "string"},
    "account.attributes": {"object"},
    "account.attributes.title": {"null", "int", "float", "bool", "list", "string"},
}
DEEP = "@deep@"


@dataclass(frozen=True)
class Poison:
    """A hostile record value, and whether the worker must dead-letter it (else accept it)."""

    name: str
    value: bytes
    dead: bool
    #: ``sourceId/<uuid or nativeIdentity>`` as the publisher keys it, unless the poison is the key.
    key: bytes | None


def _with_deep(record: dict[str, Any], levels: int) -> bytes:
    """``record`` as JSON with its ``DEEP`` string replaced by lists nested ``levels`` deep."""
    return json.dumps(record).replace(f'"{DEEP}"', "[" * levels + "0" + "]" * levels).encode()


def poison_records(source_id: str, aggregation_id: str, max_record_bytes: int) -> list[Poison]:
    """Records of a running FULL aggregation of a source without a baseline (so none emits).

    Each breaks one thing: nesting from 200 to 1,100 levels (orjson decodes 1,024 levels but
    encodes only 254) in an attribute, an extra account field and an extra top-level field;
    long and odd ids; huge strings and numbers; a wrong type at every field. Each names its
    own account, so the accepted ones do not meet.
    """
    out: list[Poison] = []

    def record(native: str, **changes: Any) -> dict[str, Any]:
        account = {"nativeIdentity": native, "attributes": {"title": "x"}}
        return {
            "type": "account",
            "sourceId": source_id,
            "aggregationId": aggregation_id,
            "account": account | changes.pop("account", {}),
            "deleted": False,
        } | changes

    def add(
        name: str,
        value: dict[str, Any] | bytes,
        dead: bool,
        keyed: dict[str, Any] | None = None,
        **key: bytes | None,
    ) -> None:
        """Add a record keyed like ``keyed`` (default: ``value``), or by ``key=``."""
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        shown = keyed if keyed is not None else value
        ref: Any = "x"
        if isinstance(shown, dict) and isinstance(shown.get("account"), dict):
            ref = shown["account"].get("uuid") or shown["account"].get("nativeIdentity")
        default = f"{source_id}/{ref}".encode(errors="surrogatepass")
        out.append(Poison(name, raw, dead, key.get("key", default)))

    # Nesting: the record, its account and attributes are 3 levels; decoding stops past 1,024.
    for levels in (200, 254, 300, 600, 1000, 1021, 1022, 1100):
        deep = record(f"CN=deep-attr-{levels}", account={"attributes": {"title": DEEP}})
        add(f"attribute nested {levels}", _with_deep(deep, levels), True, deep)
    # The raw account is encoded for its digest: dead past 254 levels in all.
    for levels in (200, 253, 254, 300, 1000, 1100):
        deep = record(f"CN=deep-extra-{levels}", account={"extra": DEEP})
        add(f"account field nested {levels}", _with_deep(deep, levels), levels + 1 > 254, deep)
    for levels in (300, 1000, 1023, 1100):
        deep = record(f"CN=deep-top-{levels}", extra=DEEP)
        add(f"ignored field nested {levels}", _with_deep(deep, levels), levels + 1 > 1024, deep)
    # Long and odd ids.
    add("nativeIdentity of 600 bytes", record("N" * 600), False)
    add("nativeIdentity of 100 KB", record("N" * 100_000), False)
    add("empty nativeIdentity", record(""), True)
    for odd in (
        "a/b/../c",
        "nul\x00here",
        "rtl\u202eevil",
        "e\u0301\u0308",
        "\U0001f600",
        "\ufeff",
    ):
        add(f"odd nativeIdentity {odd!a}", record(f"CN={odd}"), False)
    add("uuid of 600 bytes", record("CN=uuid-long", account={"uuid": "u" * 600}), False)
    add("aggregationId of 600 bytes", record("CN=agg-long", aggregationId="a" * 600), True)
    add("sourceId of 600 bytes", record("CN=src-long", sourceId="s" * 600), True)
    add("sourceId with a slash", record("CN=src-slash", sourceId=f"{source_id}/x"), True)
    add("lone surrogate", lone_surrogate(), True)
    # Time from the future.
    future = {"type": "aggregation.started", "sourceId": source_id, "aggregationId": "p9"}
    add(
        "start dated 9999",
        future | {"startedAt": "9999-12-31T00:00:00Z"},
        True,
        key=b"%s/p9" % source_id.encode(),
    )
    # Keys that do not match the value: another source's, another account's, none.
    add("key of another source", record("CN=key-src"), True, key=b"other-source/CN=key-src")
    add("key of another account", record("CN=key-acct"), True, key=f"{source_id}/CN=x".encode())
    add("no key", record("CN=key-none"), True, key=None)
    # Huge strings and numbers.
    add(
        "title of 500 KB",
        record("CN=huge-title", account={"attributes": {"t": "x" * 500_000}}),
        False,
    )
    add(
        "attribute name of 10 KB",
        record("CN=huge-name", account={"attributes": {"a" * 10_000: 1}}),
        False,
    )
    pad = max_record_bytes + 1000
    add("record over the size limit", record("CN=too-big", pad="x" * pad), True)
    for name, literal, dead in (
        ("1e400", "1e400", True),
        ("a 400-digit integer", "1" + "0" * 400, True),
        ("2^63", str(2**63), False),
        ("2^64", str(2**64), False),
        ("-0", "-0", False),
        ("1e-400", "1e-400", False),
    ):
        number = record(f"CN=number-{name}", account={"attributes": {"title": DEEP}})
        raw = json.dumps(number).replace(f'"{DEEP}"', literal).encode()
        add(f"number {name}", raw, dead, number)
    # A wrong type at every field.
    for path, accepted in ACCEPTED_TYPES.items():
        for kind, wrong in WRONG_TYPES.items():
            broken = record(f"CN=type-{path}-{kind}")
            *parents, leaf = path.split(".")
            target = broken
            for part in parents:
                target = target[part]
            target[leaf] = wrong
            add(f"{path} as {kind}", broken, kind not in accepted)
    return out
