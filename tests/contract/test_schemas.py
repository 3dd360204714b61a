"""Contract tests: the published schemas are what the models generate, and examples validate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import TypeAdapter

from processor import schemas

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = ROOT / "schemas"
EXAMPLES = sorted((SCHEMA_DIR / "examples").glob("*/*.json"))


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def test_committed_schemas_equal_generated() -> None:
    """Every committed schema file is byte-identical to what the models generate now."""
    generated = schemas.generate()
    committed = {p.name: p.read_text(encoding="utf-8") for p in SCHEMA_DIR.glob("*.schema.json")}
    assert sorted(committed) == sorted(generated), "run `make schemas` to regenerate"
    for name, text in generated.items():
        assert committed[name] == text, f"{name} is stale: run `make schemas`"


@pytest.mark.parametrize("stem", sorted(schemas.CONTRACTS))
def test_schema_is_valid_2020_12(stem: str) -> None:
    """Each published schema is itself a valid draft 2020-12 schema."""
    schema = _load(SCHEMA_DIR / f"{stem}.schema.json")
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("stem", sorted(schemas.CONTRACTS))
def test_every_contract_has_an_example(stem: str) -> None:
    """Each contract ships at least one example payload."""
    assert list((SCHEMA_DIR / "examples" / stem).glob("*.json")), stem


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_example_validates(path: Path) -> None:
    """Each example payload validates against its JSON Schema and its pydantic model."""
    stem = path.parent.name
    schema = _load(SCHEMA_DIR / f"{stem}.schema.json")
    payload = _load(path)
    jsonschema.Draft202012Validator(schema).validate(payload)
    target, _ = schemas.CONTRACTS[stem]
    TypeAdapter(target).validate_python(payload)


def test_schema_rejects_an_event_with_unknown_field() -> None:
    """Output schemas are exact: an event with an unknown field does not validate."""
    stem = "account-updated-event"
    example = next((SCHEMA_DIR / "examples" / stem).glob("*.json"))
    payload = _load(example)
    payload["unexpected"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(_load(SCHEMA_DIR / f"{stem}.schema.json")).validate(payload)


def test_diff_output_on_the_examples_validates() -> None:
    """Every event `diff` writes for the bundled example validates against its schema."""
    from processor.diffing import run_diff

    examples = ROOT / "examples"
    out = run_diff(
        source_path=examples / "source.json",
        previous_path=examples / "previous.jsonl",
        current_path=examples / "current.jsonl",
        catalog_path=examples / "catalog.jsonl",
        provisioning_path=examples / "provisioning.jsonl",
    )
    events = [json.loads(line) for line in out.splitlines()]
    assert {e["eventType"] for e in events} == {
        "ACCOUNT_CREATED",
        "ACCOUNT_UPDATED",
        "ACCOUNT_DELETED",
    }
    for event in events:
        stem = event["eventType"].lower().replace("_", "-", 1) + "-event"
        jsonschema.Draft202012Validator(_load(SCHEMA_DIR / f"{stem}.schema.json")).validate(event)


def _objects(node: Any) -> list[dict[str, Any]]:
    """Every object schema (one with ``properties``) inside a schema."""
    found = []
    if isinstance(node, dict):
        if "properties" in node:
            found.append(node)
        for value in node.values():
            found.extend(_objects(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_objects(value))
    return found


@pytest.mark.parametrize("stem", sorted(schemas.OUTPUTS))
def test_output_schemas_require_every_field_the_output_always_carries(stem: str) -> None:
    """What the processor writes always has every field, so its schema requires them all."""
    schema = _load(SCHEMA_DIR / f"{stem}.schema.json")
    objects = _objects(schema)
    assert objects
    for obj in objects:
        assert sorted(obj.get("required", [])) == sorted(obj["properties"]), obj.get("title")


def test_event_schemas_pin_the_type_constants_and_the_event_type() -> None:
    """eventType and the type of source, account, identity, owners and governance group are
    required constants in the event schemas (docs/records.md, the event)."""
    schema = _load(SCHEMA_DIR / "account-updated-event.schema.json")
    defs = schema["$defs"]
    assert "eventType" in schema["required"]
    assert schema["properties"]["eventType"]["const"] == "ACCOUNT_UPDATED"
    for name, constant in [
        ("EventSource", "SOURCE"),
        ("EventAccount", "ACCOUNT"),
        ("EventIdentity", "IDENTITY"),
        ("EventManager", "IDENTITY"),
        ("EventSourceOwner", "IDENTITY"),
        ("EventGovernanceGroup", "GOVERNANCE_GROUP"),
        ("EntitlementOwnerOut", "IDENTITY"),
    ]:
        assert defs[name]["properties"]["type"]["const"] == constant, name
        assert "type" in defs[name]["required"], name
    for lists in (
        "singleValueAttributeChanges",
        "multiValueAttributeChanges",
        "entitlementChanges",
    ):
        assert lists in schema["required"]


def test_an_event_without_its_type_constant_does_not_validate() -> None:
    """Dropping governanceGroup.type from an example event makes it invalid."""
    schema = _load(SCHEMA_DIR / "account-updated-event.schema.json")
    event = _load(SCHEMA_DIR / "examples" / "account-updated-event" / "ann-english.json")
    del event["source"]["governanceGroup"]["type"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(event)
