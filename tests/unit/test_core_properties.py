"""Property tests of the core: no-op diffs, reproducible changes, order independence, no crash.

The value pools hold the shapes real directories send: integers beyond 64 bits, names in NFC
and NFD, DATE values with 7 fractional digits, GUID uuids in either case with or without
braces, and booleans next to the numbers Python finds equal to them.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor import codec
from processor.core import (
    EntitlementCatalog,
    Event,
    SourcePolicy,
    apply_provisioning,
    decide_event,
    detect_changes,
    diff_snapshots,
    uuid_key,
)
from processor.core.values import exact_text_changes, make_normaliser, value_set
from processor.errors import InputError
from processor.models import (
    Account,
    AttributeType,
    CatalogEntry,
    ProvisioningRecord,
    SourceDescriptor,
    event_class,
)
from tests.helpers import event_model
from tests.unit.conftest import ALL_OPERATIONS, SCHEMA, SOURCE_ID, make_account, make_source

PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

ENTITLEMENTS = ["memberOf", "profile"]
OTHERS = [
    "title",
    "department",
    "employeeNumber",
    "logonCount",
    "active",
    "hireDate",
    "accountFlags",
    "extra",
    "groups",
]
#: A name in NFC and the same name in NFD (R4: equal strings).
ZOE_NFC = unicodedata.normalize("NFC", "Zoë Ångström")
ZOE_NFD = unicodedata.normalize("NFD", "Zoë Ångström")
#: Integers beyond 64 bits, and the neighbours a float would confuse them with.
BIG_INTS = [2**64 + 1, 2**64, -(2**63) - 1, 2**70]
#: DATE values: 7 fractional digits (Active Directory), one apart in the 7th, and the first
#: again at another offset with a trailing zero.
AD_DATES = [
    "2026-01-01T00:00:00.1234567Z",
    "2026-01-01T00:00:00.1234568Z",
    "2026-01-01T01:00:00.12345670+01:00",
]
#: GUID uuids, each spelled two ways (R1: the same account), and uuids that are not GUIDs.
GUIDS = [
    ("{08EE6C6D-7D02-4978-9417-D92BA6A5ED50}", "08ee6c6d-7d02-4978-9417-d92ba6a5ed50"),
    ("9f506172-8394-4ea5-8fb6-07c8d9293a45", "{9F506172-8394-4EA5-8FB6-07C8D9293A45}"),
]
UUIDS = [None, "u1", "U1", "u2", "u3", *(spelling for pair in GUIDS for spelling in pair)]
TEXTS = st.sampled_from(
    [
        *["a", "A", "b", "B", "5", "5.0", "6", " 5 ", "true", "TRUE", "false", "x y", ""],
        *["2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00", "2026-01-02", "CN=A", "cn=a"],
        *[ZOE_NFC, ZOE_NFD, "1", str(2**64 + 1), str(2**64), *AD_DATES],
    ]
)
FINITE_SCALARS = st.one_of(
    st.none(),
    TEXTS,
    st.integers(-3, 7),
    st.booleans(),
    st.sampled_from([5.0, 0.5, -0.0, 1.0, *BIG_INTS]),
)
#: Anything JSON can carry (so no NaN or infinity).
ANY_SCALARS = st.one_of(
    FINITE_SCALARS,
    st.text(max_size=8),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
)
MOSTLY_TRUE = st.sampled_from([True, True, False])
ENTITLEMENT_SCALARS = st.one_of(
    st.none(),
    st.sampled_from(["CN=A", "cn=a", "CN=B", "CN=C", "", f"CN={ZOE_NFC}", f"CN={ZOE_NFD}"]),
)


def values(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """An attribute value: a scalar or a short list of scalars."""
    return st.one_of(scalars, st.lists(scalars, max_size=4))


@st.composite
def attribute_maps(
    draw: st.DrawFn, scalars: st.SearchStrategy[Any] = FINITE_SCALARS
) -> dict[str, Any]:
    """Attributes of one account: entitlements hold strings, the others anything."""
    result: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(OTHERS + ENTITLEMENTS), unique=True, max_size=6)):
        pool = values(ENTITLEMENT_SCALARS) if name in ENTITLEMENTS else values(scalars)
        result[name] = draw(pool)
    return result


@st.composite
def sources(draw: st.DrawFn, *, updates: bool = False) -> SourceDescriptor:
    """A source with a random NCD config (updates monitored and enabled when asked)."""
    operations = draw(
        st.one_of(st.just(ALL_OPERATIONS), st.lists(st.sampled_from(ALL_OPERATIONS), unique=True))
    )
    if updates and "ACCOUNT_UPDATED" not in operations:
        operations = [*operations, "ACCOUNT_UPDATED"]
    return make_source(
        enabled=updates or draw(MOSTLY_TRUE),
        operations=operations,
        all_entitlements=draw(MOSTLY_TRUE),
        all_others=draw(MOSTLY_TRUE),
        selected_entitlements=draw(st.lists(st.sampled_from(ENTITLEMENTS), unique=True)),
        selected_others=draw(st.lists(st.sampled_from(OTHERS), unique=True)),
        case_insensitive=draw(st.booleans()),
        delete_threshold=draw(st.sampled_from([None, 0, 10, 50, 100])),
    )


@st.composite
def snapshots(draw: st.DrawFn, scalars: st.SearchStrategy[Any] = FINITE_SCALARS) -> list[Account]:
    """Accounts with distinct (case-folded) nativeIdentities and distinct uuids."""
    names = draw(
        st.lists(
            st.sampled_from(["CN=Ann", "CN=Bob", "CN=Cy", "CN=Dee", "CN=Eve", "CN=Fay"]),
            unique=True,
            max_size=5,
        )
    )
    accounts = []
    for name in names:
        uuid = draw(st.sampled_from(UUIDS))
        identity = draw(st.sampled_from([None, {"id": "i1", "name": "Ann", "manager": None}]))
        accounts.append(
            make_account(
                draw(st.sampled_from([name, name.upper()])),
                draw(attribute_maps(scalars)),
                uuid=uuid,
                identity=identity,
            )
        )
    seen: set[str] = set()
    unique = []
    for account in accounts:
        if account.uuid is None or uuid_key(account.uuid) not in seen:
            seen.add(uuid_key(account.uuid or ""))
            unique.append(account)
    return unique


@st.composite
def attribute_changes(draw: st.DrawFn) -> dict[str, Any]:
    """One Set/Add/Remove change of a provisioning record."""
    return {
        "op": draw(st.sampled_from(["Set", "Add", "Remove"])),
        "attribute": draw(st.sampled_from(OTHERS + ENTITLEMENTS)),
        "value": draw(values(FINITE_SCALARS)),
    }


@st.composite
def provisioning_records(draw: st.DrawFn) -> list[ProvisioningRecord]:
    """Records of Set/Add/Remove changes (or complete outputs) for the snapshot's names."""
    records = []
    for _ in range(draw(st.integers(0, 4))):
        change = draw(attribute_changes())
        output = draw(st.sampled_from([{}, {"attributes": {"title": "out"}, "disabled": True}]))
        records.append(
            ProvisioningRecord.model_validate(
                {
                    "sourceId": draw(st.sampled_from([SOURCE_ID, "other"])),
                    "input": {
                        "key": {"simple": {"id": draw(st.sampled_from(["CN=Ann", "cn=bob"]))}},
                        "changes": [change],
                    },
                    "output": output,
                    "completedAt": draw(
                        st.sampled_from(
                            [
                                None,
                                "2026-01-01T00:00:00Z",
                                "2026-01-01T01:00:00+01:00",
                                "2026-01-01T00:00:00.1234567Z",
                            ]
                        )
                    ),
                    "status": draw(st.sampled_from(["COMPLETED", "PENDING"])),
                }
            )
        )
    return records


CATALOG = EntitlementCatalog(
    [
        CatalogEntry(attribute="memberOf", value="CN=A", id="ea", name="A"),
        CatalogEntry(attribute="profile", value="CN=B", id="eb", name="B"),
    ]
)


def dumps(events: list[Event]) -> bytes:
    """Events as the bytes ``diff`` would write (one JSON document per line)."""
    return b"".join(codec.dumps(event.body) + b"\n" for event in events)


def assert_ordered(policy: SourcePolicy, built: Event) -> None:
    """R5/R12: change lists sorted by name, values ascending by their normalised keys."""
    event = event_model(built)
    names = [c.name for c in event.singleValueAttributeChanges]
    assert names == sorted(names)
    names = [c.name for c in event.multiValueAttributeChanges]
    assert names == sorted(names)
    names = [c.attributeName for c in event.entitlementChanges]
    assert names == sorted(names)
    for multi in event.multiValueAttributeChanges:
        key = policy.normaliser(multi.name)
        for found in (multi.addedValues, multi.removedValues):
            assert [key(v) for v in found] == sorted({key(v) for v in found})
    for ent in event.entitlementChanges:
        key = policy.normaliser(ent.attributeName)
        for refs in (ent.added, ent.removed):
            assert [key(r.value) for r in refs] == sorted({key(r.value) for r in refs})


def reverting_changes(built: Event) -> list[dict[str, Any]]:
    """The reported changes of an event as provisioning changes (Remove before Add)."""
    event = event_model(built)
    changes: list[dict[str, Any]] = [
        {"op": "Set", "attribute": c.name, "value": c.newValue}
        for c in event.singleValueAttributeChanges
    ]
    for multi in event.multiValueAttributeChanges:
        changes.append({"op": "Remove", "attribute": multi.name, "value": multi.removedValues})
        changes.append({"op": "Add", "attribute": multi.name, "value": multi.addedValues})
    for ent in event.entitlementChanges:
        changes.append(
            {
                "op": "Remove",
                "attribute": ent.attributeName,
                "value": [r.value for r in ent.removed],
            }
        )
        changes.append(
            {"op": "Add", "attribute": ent.attributeName, "value": [r.value for r in ent.added]}
        )
    return changes


@PROPERTY_SETTINGS
@given(source=sources(), accounts=snapshots())
def test_identical_snapshots_give_no_events(
    source: SourceDescriptor, accounts: list[Account]
) -> None:
    """Diffing a snapshot against itself (or a re-parsed copy of it) gives no event."""
    copy = [
        Account.model_validate_json(account.model_dump_json()) for account in reversed(accounts)
    ]
    result = diff_snapshots(source, accounts, copy, CATALOG)
    assert result.events == []
    assert result.would_delete == 0 and not result.deletes_suppressed


@PROPERTY_SETTINGS
@given(source=sources(updates=True), before=attribute_maps(), after=attribute_maps())
def test_applying_reported_changes_reproduces_the_monitored_current_state(
    source: SourceDescriptor, before: dict[str, Any], after: dict[str, Any]
) -> None:
    """Applying an update's reported changes to the previous account leaves no monitored change."""
    policy = SourcePolicy.from_source(source)
    previous = make_account("CN=Ann", before)
    current = make_account("CN=Ann", after)
    event = decide_event(policy, previous, current, CATALOG)
    if event is not None:
        assert_ordered(policy, event)
    if event is None:
        assert detect_changes(policy, before, after, CATALOG).is_empty
        return
    record = ProvisioningRecord.model_validate(
        {
            "sourceId": SOURCE_ID,
            "input": {"identity": "CN=Ann", "changes": reverting_changes(event)},
        }
    )
    rebuilt = apply_provisioning(policy, previous, record)
    assert detect_changes(policy, rebuilt.attributes, after, CATALOG).is_empty
    assert detect_changes(policy, after, rebuilt.attributes, CATALOG).is_empty


@PROPERTY_SETTINGS
@given(
    source=sources(),
    previous=snapshots(),
    current=snapshots(),
    records=provisioning_records(),
    data=st.data(),
)
def test_permuting_input_lines_changes_nothing(
    source: SourceDescriptor,
    previous: list[Account],
    current: list[Account],
    records: list[ProvisioningRecord],
    data: st.DataObject,
) -> None:
    """Any order of the snapshot and provisioning lines gives byte-identical output."""
    try:
        expected = diff_snapshots(source, previous, current, CATALOG, records)
    except InputError:
        return
    shuffled = diff_snapshots(
        source,
        data.draw(st.permutations(previous)),
        data.draw(st.permutations(current)),
        CATALOG,
        data.draw(st.permutations(records)),
    )
    assert dumps(shuffled.events) == dumps(expected.events)
    assert (shuffled.would_delete, shuffled.deletes_suppressed) == (
        expected.would_delete,
        expected.deletes_suppressed,
    )


@PROPERTY_SETTINGS
@given(
    source=sources(),
    previous=snapshots(ANY_SCALARS),
    current=snapshots(ANY_SCALARS),
    records=provisioning_records(),
    case_schema=st.sampled_from(SCHEMA),
)
def test_no_input_of_the_declared_shape_crashes_the_core(
    source: SourceDescriptor,
    previous: list[Account],
    current: list[Account],
    records: list[ProvisioningRecord],
    case_schema: dict[str, Any],
) -> None:
    """Any valid input diffs without error (or an InputError), into events the models accept
    and dump back to the same JSON."""
    try:
        result = diff_snapshots(source, previous, current, CATALOG, records)
    except InputError:
        return
    policy = SourcePolicy.from_source(source)
    for event in result.events:
        assert_ordered(policy, event)  # checks it with its model (event_model)
        again = event_class(event.operation).model_validate_json(json.dumps(event.body))
        assert codec.dumps(again.model_dump(mode="json")) == codec.dumps(event.body)
    for account in previous + current:
        for other in (None, *current[:1]):
            built = decide_event(policy, account, other, CATALOG, context=case_schema["name"])
            if built is not None:
                event_model(built)


def _respelled(value: Any) -> Any:
    """Every string of a value in NFD (the same text to R4)."""
    if isinstance(value, list):
        return [_respelled(item) for item in value]
    return unicodedata.normalize("NFD", value) if isinstance(value, str) else value


def _other_spelling(uuid: str | None) -> str | None:
    """A GUID uuid in the other case with braces toggled; other uuids unchanged."""
    if uuid is None or uuid_key(uuid.upper()) == uuid.upper():  # not a GUID
        return uuid
    bare = uuid.strip("{}")
    bare = bare.lower() if bare.isupper() else bare.upper()
    return bare if uuid.startswith("{") else "{" + bare + "}"


@PROPERTY_SETTINGS
@given(source=sources(), accounts=snapshots(), data=st.data())
def test_respelling_strings_in_nfd_and_guids_in_another_case_gives_no_events(
    source: SourceDescriptor, accounts: list[Account], data: st.DataObject
) -> None:
    """The same snapshot with strings in NFD and GUID uuids re-spelled gives no event."""
    respelled = [
        account.model_copy(
            update={
                "uuid": _other_spelling(account.uuid) if data.draw(st.booleans()) else account.uuid,
                "attributes": {k: _respelled(v) for k, v in account.attributes.items()},
            }
        )
        for account in accounts
    ]
    result = diff_snapshots(source, accounts, respelled, CATALOG)
    assert result.events == []
    assert result.would_delete == 0


@PROPERTY_SETTINGS
@given(
    name=st.sampled_from(["title", "employeeNumber", "accountFlags", "extra"]),
    old=st.integers(min_value=2**63 - 2, max_value=2**80) | st.integers(max_value=-(2**63)),
    step=st.integers(min_value=1, max_value=3),
)
def test_big_integers_compare_and_report_digit_for_digit(name: str, old: int, step: int) -> None:
    """Integers beyond 64 bits one apart, read from JSON text, are a change reported with
    every digit in the written event; the same digits as a string equal them on INT only."""
    policy = SourcePolicy.from_source(make_source())
    new = old + step

    def read(value: str) -> Account:
        text = f'{{"nativeIdentity": "CN=Ann", "attributes": {{"{name}": {value}}}}}'
        return Account.model_validate(codec.loads(text.encode()))

    event = decide_event(policy, read(str(old)), read(str(new)), CATALOG)
    assert event is not None
    written = codec.loads(codec.dumps(event.body))
    if written["singleValueAttributeChanges"]:
        change = written["singleValueAttributeChanges"][0]
        assert (change["oldValue"], change["newValue"]) == (old, new)
    else:
        change = written["multiValueAttributeChanges"][0]
        assert (change["removedValues"], change["addedValues"]) == ([old], [new])
    same = decide_event(policy, read(str(old)), read(f'"{old}"'), CATALOG)
    assert (same is None) == (name == "employeeNumber")


@PROPERTY_SETTINGS
@given(
    seconds=st.integers(0, 59),
    digits=st.text("0123456789", min_size=1, max_size=9),
    offset=st.sampled_from([("Z", 0), ("+01:00", 1), ("-05:00", -5)]),
    bump=st.integers(0, 8),
)
def test_dates_compare_at_every_fractional_digit(
    seconds: int, digits: str, offset: tuple[str, int], bump: int
) -> None:
    """A DATE equals itself at another offset or with trailing zeros, and differs in any digit."""
    policy = SourcePolicy.from_source(make_source())
    hour = 10 + offset[1]
    base = f"2026-03-01T10:00:{seconds:02d}.{digits}Z"
    same = f"2026-03-01T{hour:02d}:00:{seconds:02d}.{digits}0{offset[0]}"
    position = min(bump, len(digits) - 1)
    changed = digits[:position] + str((int(digits[position]) + 1) % 10) + digits[position + 1 :]
    other = f"2026-03-01T10:00:{seconds:02d}.{changed}Z"
    before = make_account("CN=Ann", {"hireDate": base})
    assert decide_event(policy, before, make_account("CN=Ann", {"hireDate": same}), CATALOG) is None
    event = decide_event(policy, before, make_account("CN=Ann", {"hireDate": other}), CATALOG)
    assert event is not None
    assert event_model(event).singleValueAttributeChanges[0].newValue == other


@PROPERTY_SETTINGS
@given(
    name=st.sampled_from(["title", "accountFlags", "memberOf", "extra"]),
    pair=st.sampled_from([(True, 1), (False, 0), (True, 1.0), (True, "true"), (1, "1")]),
    as_list=st.booleans(),
)
def test_values_of_different_json_types_differ_on_string_attributes(
    name: str, pair: tuple[Any, Any], as_list: bool
) -> None:
    """On a STRING attribute true, 1 and "1" are different values (Python's True == 1 aside)."""
    policy = SourcePolicy.from_source(make_source())
    old, new = ([pair[0]], [pair[1]]) if as_list else pair
    event = decide_event(
        policy, make_account("CN=Ann", {name: old}), make_account("CN=Ann", {name: new}), CATALOG
    )
    assert event is not None


def _uuid_key_by_pattern(uuid: str) -> str:
    """R1's uuid key as the pattern alone gives it (the reference for the shortcut)."""
    found = re.fullmatch(
        r"(\{)?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?(1)\})",
        uuid,
    )
    return uuid if found is None else "{" + found.group(2).lower() + "}"


_HEX_GUID = st.uuids().map(str)


@PROPERTY_SETTINGS
@given(
    uuid=st.one_of(
        st.text(),
        st.text().map(lambda t: "{" + t),
        st.tuples(_HEX_GUID, st.booleans(), st.booleans(), st.booleans()).map(
            lambda g: (
                ("{" if g[1] else "") + (g[0].upper() if g[3] else g[0]) + ("}" if g[2] else "")
            )
        ),
    )
)
def test_uuid_key_shortcut_gives_what_the_pattern_gives(uuid: str) -> None:
    """uuid_key's shortcut for braced lower-case text returns what R1's pattern returns."""
    assert uuid_key(uuid) == _uuid_key_by_pattern(uuid)


#: Lists of strings with the awkward members: empty strings, duplicates, case variants,
#: non-ASCII text (not the quick way's), and a non-string now and then (not its either).
_GROUP_LISTS = st.lists(
    st.one_of(
        st.sampled_from(["", "CN=A", "cn=a", "CN=B", "CN=Zo\u00eb", "CN=Zoe\u0308"]),
        st.text(alphabet="ab=,", max_size=3),
        st.sampled_from([None, 1, True]),
    ),
    max_size=6,
)


@PROPERTY_SETTINGS
@given(
    old=st.one_of(_GROUP_LISTS, st.sampled_from(["CN=A", None])),
    new=st.one_of(_GROUP_LISTS, st.none()),
)
def test_the_quick_text_list_changes_are_the_value_sets_changes(old: Any, new: Any) -> None:
    """Where the quick way for lists of ASCII strings answers, its added and removed values
    are those the value sets of an exactly compared STRING attribute give, in their order."""
    normalise = make_normaliser(AttributeType.STRING, False)
    quick = exact_text_changes(old, new)
    if quick is None:
        return
    old_set, new_set = value_set(old, normalise, False), value_set(new, normalise, False)
    added = [new_set[key] for key in sorted(new_set.keys() - old_set.keys())]
    removed = [old_set[key] for key in sorted(old_set.keys() - new_set.keys())]
    assert quick == (added, removed)


def test_the_quick_text_list_changes_answer_only_for_ascii_strings() -> None:
    """The quick way answers lists of ASCII strings and leaves any other values to the sets."""
    assert exact_text_changes(["CN=A", "", "CN=B"], ["CN=B", "CN=C", "CN=C"]) == (
        ["CN=C"],
        ["CN=A"],
    )
    assert exact_text_changes(["CN=Zo\u00eb"], []) is None
    assert exact_text_changes(["CN=A", None], []) is None
    assert exact_text_changes("CN=A", ["CN=A"]) is None
    assert exact_text_changes(None, ["CN=B", "CN=A"]) == (["CN=A", "CN=B"], [])
