"""What the compact way found of a record, handed on to its later paths, decides as reading
and hashing again would (issue 14)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor import codec
from processor.keys import record_key
from processor.models import Account
from processor.state import BatchOverlay
from processor.worker import account_flow, accounts
from processor.worker import partition as partition_module
from processor.worker.accounts import Looked
from processor.worker.envelope import NOT_DELETED, account_bytes, account_digest
from processor.worker.state import bytes_digest, canonical_digest, k_account
from tests.unit.test_compact_path import compact
from tests.unit.test_fast_path import T1
from tests.unit.test_partition import SRC
from tests.unit.test_unchanged_runs import ACCOUNTS, KINDS, Worker, _key, _record, _second

#: Besides the runs' kinds: a changed account in another spacing, an unchanged one with a
#: space after it (the compact way hashes it with its account), a created one, one that lost
#: its uuid, one whose uuid is not ASCII (another account, R1), a changed one that holds a
#: null (its validated account dumps to other JSON), one deleted (DELTA only: dead-lettered).
MORE = ["changed_space", "spaced_end", "created", "no_uuid", "non_ascii", "null", "deleted"]


def _altered(agg: str, account: dict[str, Any], kind: str) -> tuple[bytes | None, bytes | None]:
    """An account record of the second aggregation, as it was or altered by ``kind``."""
    if kind in KINDS:
        return _record(agg, account, kind)
    n = ACCOUNTS.index(account)
    changed = {**account, "attributes": {"title": "Lead", "memberOf": ["g2"]}}
    if kind == "changed_space":
        return _key(account), compact(agg, changed).replace(b'"attributes":', b'"attributes": ')
    if kind == "spaced_end":
        value = compact(agg, account)
        return _key(account), value[: -len(NOT_DELETED)] + b" " + NOT_DELETED
    if kind == "null":
        return _key(account), compact(agg, {**changed, "name": None})
    if kind == "created":
        new = {**account, "nativeIdentity": f"CN=new{n}", "uuid": f"new-{n}"}
        return _key(new), compact(agg, new)
    if kind == "no_uuid":
        plain = {k: v for k, v in changed.items() if k != "uuid"}
        return record_key(SRC, None, plain["nativeIdentity"]), compact(agg, plain)
    if kind == "non_ascii":
        other = {**changed, "uuid": "é" + account["uuid"]}
        return _key(other), compact(agg, other)
    return _key(account), compact(agg, account, deleted=True)


def _without_carry() -> list[AbstractContextManager[Any]]:
    """Patches under which every path reads, hashes and encodes for itself."""
    get, digest_of = accounts._get, partition_module.account_digest
    draft_of = account_flow._Draft.of
    return [
        mock.patch.object(accounts, "_get", lambda s, k, state, _: get(s, k, state, None)),
        mock.patch.object(
            partition_module, "account_digest", lambda seen, value, _=None: digest_of(seen, value)
        ),
        mock.patch.object(
            account_flow._Draft,
            "of",
            staticmethod(lambda account, inputs, _=None: draft_of(account, inputs)),
        ),
    ]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kinds=st.lists(
        st.sampled_from(["same"] * 3 + KINDS + MORE),
        min_size=len(ACCOUNTS),
        max_size=len(ACCOUNTS),
    ),
    split=st.integers(0, len(ACCOUNTS) + 2),
)
def test_carried_reads_decide_as_reading_again(kinds: list[str], split: int) -> None:
    """Changed, created, re-spelled, uuid-less, non-ASCII, unreadable and wrongly keyed
    records among unchanged ones give the same outputs, counts and state whether the later
    paths use what the compact way (of a run or of the record) found and the input's canonical
    JSON, or read, hash and encode anew."""
    fresh = _second(kinds, split, False, _altered, _without_carry())
    assert _second(kinds, split, False, _altered) == fresh
    assert _second(kinds, split, True, _altered) == fresh


def test_a_known_digest_is_used_only_for_the_account_s_own_bytes() -> None:
    """The digest of bytes hashed before is taken only when they are the ``account`` bytes;
    any other span is hashed anew."""
    value = compact("a2", ACCOUNTS[0])
    seen = account_bytes(value)
    assert seen is not None
    start_at = value.index(b'"account":') + len(b'"account":')
    stop = start_at + len(seen.account)
    assert account_digest(seen, value, (start_at, stop, b"known")) == b"known"
    own = bytes_digest(value[start_at:stop])
    assert account_digest(seen, value, (start_at, stop + 1, b"known")) == own
    assert account_digest(seen, value, (start_at + 1, stop + 1, b"known")) == own


def test_a_carried_read_is_used_only_for_its_source_and_key() -> None:
    """A lookup takes the carried value only for the very state key it was read from."""
    worker = Worker()
    worker.aggregation("a1", T1, ACCOUNTS[:1])
    state = BatchOverlay(worker.store)
    uuid, native = ACCOUNTS[0]["uuid"], ACCOUNTS[0]["nativeIdentity"]
    stored = state.get(k_account(SRC, f"u:{uuid}"))
    assert stored is not None
    looked = Looked(b"", 0, 0, b"", SRC, f"u:{uuid}", b"carried")
    assert accounts.lookup(SRC, uuid, native, state, looked) == (f"u:{uuid}", b"carried")
    other = looked._replace(source_id="other")
    assert accounts.lookup(SRC, uuid, native, state, other) == (f"u:{uuid}", stored)
    elsewhere = looked._replace(key="u:else")
    assert accounts.lookup(SRC, uuid, native, state, elsewhere) == (f"u:{uuid}", stored)


#: Members besides ``attributes`` in the forms validation keeps and in those it changes
#: (lax booleans, ``null``, an unknown member, an identity whose email default fills in).
_HEADS = st.fixed_dictionaries(
    {"nativeIdentity": st.sampled_from(["CN=a", "cn=\u00e9"])},
    optional={
        "id": st.sampled_from([None, "a-1", ""]),
        "uuid": st.sampled_from([None, "u-1"]),
        "name": st.sampled_from([None, "A", ""]),
        "correlated": st.sampled_from([True, False, None, 1, 0, "true"]),
        "identity": st.sampled_from(
            [
                None,
                {"id": "i1"},
                {"id": "i1", "email": ""},
                {"id": "i1", "email": None},
                {"id": "i1", "email": "e", "manager": {"id": "m", "email": "f"}},
                {"id": "i1", "email": "e", "manager": {"id": "m"}},
                {"id": "i1", "email": "e", "manager": {"id": "m", "email": "f", "type": "x"}},
                {"id": "i1", "email": "e", "manager": None},
                {"id": "i1", "email": "e", "alias": "a", "name": "n", "x": "y"},
                {"email": "e", "name": "n", "alias": "a"},
            ]
        ),
        "disabled": st.sampled_from([True, False, None, 1]),
        "locked": st.sampled_from([True, None, 0]),
        "extra": st.sampled_from([None, 1, "x"]),
    },
)


@settings(max_examples=300, deadline=None)
@given(head=_HEADS, attributes=st.sampled_from([{}, {"title": "T", "n": [1, 1.5, None, True]}]))
def test_an_account_stores_its_model_s_canonical_json(
    head: dict[str, Any], attributes: dict[str, Any]
) -> None:
    """The JSON an account is stored as is its model's canonical dump, with that JSON's digest,
    whether or not validation changed the record's ``account`` (its given JSON is used only
    when it is the same)."""
    data = {**head, "attributes": attributes}
    model = Account.model_validate(data)
    canonical = codec.dumps_canonical(data)
    inputs = (canonical_digest(canonical), b"bytes")
    draft = account_flow._Draft.of(model, inputs, account_flow.Given(canonical, data))
    expected = codec.dumps_canonical(model.model_dump(mode="json", exclude_none=True))
    assert draft.json == expected
    assert draft.digest == canonical_digest(expected)
    assert draft.inputs == inputs
