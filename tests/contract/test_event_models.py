"""The core builds events as plain JSON data; the published models must take every one of them
and dump it back byte for byte, so the builder and the schema cannot drift apart."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor import codec
from processor.core import (
    EntitlementCatalog,
    Event,
    SourcePolicy,
    decide_event,
    event_id,
    update_event,
)
from processor.models import Account, CatalogEntry, SourceDescriptor, event_class
from tests.helpers import event_model
from tests.unit.conftest import SCHEMA, make_source

#: Text of any script (non-ASCII, combining marks, astral characters), and some odd spellings.
TEXT = st.one_of(st.text(max_size=12), st.sampled_from(["", " ", "CN=A", "cn=a", "Zoe\u0308"]))
OPTIONAL_TEXT = st.one_of(st.none(), TEXT)
#: Every JSON scalar, integers beyond 64 bits and awkward floats included.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    TEXT,
    st.integers(),
    st.sampled_from([2**64, -(2**63) - 1, 2**80]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([-0.0, 1e300, 5e-324, 1.0]),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4))
#: Entitlement values: the catalog's own, their other spellings, and any text.
GROUPS = st.one_of(st.sampled_from(["CN=A", "cn=a", "CN=B", "CN=Zo\u00eb", "CN=Zoe\u0308"]), TEXT)
NAMES = [str(attribute["name"]) for attribute in SCHEMA] + ["extra", "\u540d\u524d"]
ENTITLEMENT_NAMES = {"memberOf", "profile"}

#: An optional person block (a manager, a source owner) and an optional named block (a
#: governance group, a catalog entry's owner).
PERSON = st.one_of(
    st.none(),
    st.fixed_dictionaries({"id": OPTIONAL_TEXT, "name": OPTIONAL_TEXT, "email": OPTIONAL_TEXT}),
)
NAMED = st.one_of(st.none(), st.fixed_dictionaries({"id": OPTIONAL_TEXT, "name": OPTIONAL_TEXT}))

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def attributes(draw: st.DrawFn) -> dict[str, Any]:
    """An account's attributes: entitlements hold group names, the others any value."""
    result: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=8)):
        if name in ENTITLEMENT_NAMES:
            result[name] = draw(st.one_of(GROUPS, st.lists(GROUPS, max_size=4)))
        else:
            result[name] = draw(VALUES)
    return result


@st.composite
def accounts(draw: st.DrawFn) -> Account:
    """An account with or without uuid, name, id, identity (and its manager) and flag."""
    identity = st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {"id": OPTIONAL_TEXT, "name": OPTIONAL_TEXT, "alias": OPTIONAL_TEXT},
            optional={"email": OPTIONAL_TEXT, "manager": PERSON},
        ),
    )
    document = {
        "nativeIdentity": draw(st.text(min_size=1, max_size=12)),
        "uuid": draw(st.one_of(st.none(), st.just("{08EE6C6D-7D02-4978-9417-D92BA6A5ED50}"), TEXT)),
        "name": draw(OPTIONAL_TEXT),
        "id": draw(OPTIONAL_TEXT),
        "identity": draw(identity),
        "correlated": draw(st.one_of(st.none(), st.booleans())),
        "attributes": draw(attributes()),
    }
    return Account.model_validate(document)


@st.composite
def sources(draw: st.DrawFn) -> SourceDescriptor:
    """A source monitoring everything, with or without alias, owner and governance group."""
    return make_source(
        case_insensitive=draw(st.booleans()),
        alias=draw(OPTIONAL_TEXT),
        owner=draw(PERSON),
        governanceGroup=draw(NAMED),
        name=draw(st.text(min_size=1, max_size=12)),
    )


@st.composite
def catalogs(draw: st.DrawFn) -> EntitlementCatalog:
    """Catalog entries for some groups: with or without id, name and owner."""
    entries = []
    for value in draw(st.lists(GROUPS, unique=True, max_size=4)):
        owner = draw(NAMED)
        entries.append(
            CatalogEntry.model_validate(
                {
                    "attribute": draw(st.sampled_from(sorted(ENTITLEMENT_NAMES))),
                    "value": value,
                    "id": draw(OPTIONAL_TEXT),
                    "name": draw(OPTIONAL_TEXT),
                    "owner": owner,
                }
            )
        )
    return EntitlementCatalog(entries)


def assert_the_model_agrees(event: Event, context: str) -> None:
    """The event's model takes its body and dumps it back to the same bytes; the id is the
    id of that body."""
    dumped = event_model(event).model_dump(mode="json")  # the same bytes as the body
    assert dumped["eventType"] == event.operation.value
    assert event.id == event_id(dumped, context)
    # And from the written bytes, as a reader of the events topic or of `diff` would.
    again = event_class(event.operation).model_validate_json(codec.dumps(event.body))
    assert codec.dumps(again.model_dump(mode="json")) == codec.dumps(event.body)


@SETTINGS
@given(
    source=sources(),
    catalog=catalogs(),
    before=accounts(),
    after=accounts(),
    context=st.one_of(st.just(""), TEXT),
)
def test_every_event_the_core_builds_is_its_models_json_form(
    source: SourceDescriptor,
    catalog: EntitlementCatalog,
    before: Account,
    after: Account,
    context: str,
) -> None:
    """Creations, updates and deletions of any accounts (non-ASCII text, big integers, odd
    floats, catalog refs with and without owners, identities with managers) validate with
    their models and dump back to exactly the JSON the core built."""
    policy = SourcePolicy.from_source(source)
    built = [
        decide_event(policy, None, after, catalog, context=context),
        decide_event(policy, before, after, catalog, context=context),
        decide_event(policy, before, None, catalog, context=context),
    ]
    for event in built:
        if event is not None:
            assert_the_model_agrees(event, context)


@SETTINGS
@given(source=sources(), catalog=catalogs(), before=accounts(), after=accounts())
def test_an_update_from_stored_data_is_the_update_from_the_model(
    source: SourceDescriptor,
    catalog: EntitlementCatalog,
    before: Account,
    after: Account,
) -> None:
    """The worker's update event from the stored account's attributes as read back from its
    canonical JSON (not validated again) is, byte for byte, the event from the model."""
    policy = SourcePolicy.from_source(source)
    stored = codec.dumps_canonical(before.model_dump(mode="json", exclude_none=True))
    attributes = codec.loads(stored)["attributes"]
    expected = decide_event(policy, before, after, catalog, context="agg")
    got = update_event(policy, attributes, after, catalog, context="agg")
    assert (None if got is None else codec.dumps(got.body)) == (
        None if expected is None else codec.dumps(expected.body)
    )


def test_the_property_meets_every_kind_of_event_and_block() -> None:
    """One fixed case holds every block at once (refs with an owner, a manager, multi-values,
    non-ASCII text), so the property above cannot pass on empty events alone."""
    source = make_source(case_insensitive=True)
    catalog = EntitlementCatalog(
        [
            CatalogEntry(
                attribute="memberOf",
                value="CN=Zo\u00eb",
                id="e1",
                name=None,
                owner={"id": "o1", "name": "\u00c5sa"},  # type: ignore[arg-type]
            )
        ]
    )
    before = Account.model_validate(
        {
            "nativeIdentity": "CN=\u00c5sa",
            "uuid": "{08EE6C6D-7D02-4978-9417-D92BA6A5ED50}",
            "identity": {"id": "i1", "name": "\u00c5sa", "manager": {"id": "m1", "name": "M"}},
            "attributes": {"title": "a", "accountFlags": ["x", 2**70], "memberOf": []},
        }
    )
    after = before.model_copy(
        update={"attributes": {"title": 1e300, "accountFlags": [0.5], "memberOf": ["CN=Zoe\u0308"]}}
    )
    policy = SourcePolicy.from_source(source)
    for previous, current in ((None, after), (before, after), (before, None)):
        event = decide_event(policy, previous, current, catalog, context="agg")
        assert event is not None
        assert_the_model_agrees(event, "agg")
    update = decide_event(policy, before, after, catalog)
    assert update is not None
    body = update.body
    assert body["identity"]["manager"] is not None
    assert body["singleValueAttributeChanges"][0]["newValue"] == 1e300
    assert body["multiValueAttributeChanges"][0]["removedValues"] == [2**70, "x"]
    [ref] = body["entitlementChanges"][0]["added"]
    assert ref["owner"] == {"id": "o1", "name": "\u00c5sa", "type": "IDENTITY"}
    assert ref["value"] == "CN=Zoe\u0308"
