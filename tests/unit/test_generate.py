"""The synthetic data generator (bench/generate.py) and the hand-written examples/."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # bench/ is not an installed package; it lives at the repo root
    sys.path.insert(0, str(REPO))

from bench.generate import Dataset, generate, main, write  # noqa: E402 (after the path fix)
from processor.models import (  # noqa: E402 (after the path fix)
    Account,
    CatalogEntry,
    ProvisioningRecord,
    SourceDescriptor,
)

EXAMPLES = REPO / "examples"
N, CHANGED, SEED = 600, 0.1, 3
UUID = re.compile(r"^\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}$")


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate(N, CHANGED, SEED)


@pytest.fixture(scope="module")
def out_dir(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    write(dataset, out)
    return out


def _monitored(account: dict[str, Any], monitored: list[str]) -> dict[str, Any]:
    """An independent oracle: monitored values, lists as sets (R5), for counting changes."""
    attrs = account["attributes"]
    return {
        name: frozenset(attrs.get(name) or [])
        if name in ("memberOf", "proxyAddresses")
        else attrs.get(name)
        for name in monitored
    }


def _apply(account: dict[str, Any], record: dict[str, Any]) -> None:
    attrs = account["attributes"]
    for change in record["input"]["changes"]:
        if change["op"] == "Set":
            attrs[change["attribute"]] = change["value"]
        elif change["op"] == "Add":
            attrs[change["attribute"]] = [*attrs[change["attribute"]], *change["value"]]


def test_same_seed_gives_byte_identical_files(
    dataset: Dataset, out_dir: Path, tmp_path: Path
) -> None:
    """Generating and writing twice with the same seed gives the same bytes in every file."""
    write(generate(N, CHANGED, SEED), tmp_path)
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == [
        "catalog.jsonl",
        "current.jsonl",
        "previous.jsonl",
        "provisioning.jsonl",
        "source.json",
    ]
    for name in names:
        assert (tmp_path / name).read_bytes() == (out_dir / name).read_bytes(), name


def test_another_seed_gives_other_data() -> None:
    """A different seed changes the accounts, not only their order."""
    one = next(generate(50, 0.1, 1).previous())
    other = next(generate(50, 0.1, 2).previous())
    assert one["uuid"] != other["uuid"]
    assert one["attributes"]["memberOf"] != other["attributes"]["memberOf"]


def test_every_generated_line_validates(out_dir: Path) -> None:
    """Every generated file validates against the contract models."""
    SourceDescriptor.model_validate_json((out_dir / "source.json").read_bytes())
    for name in ("previous.jsonl", "current.jsonl"):
        for line in (out_dir / name).read_bytes().splitlines():
            Account.model_validate_json(line)
    for line in (out_dir / "catalog.jsonl").read_bytes().splitlines():
        CatalogEntry.model_validate_json(line)
    records = (out_dir / "provisioning.jsonl").read_bytes().splitlines()
    assert records
    for line in records:
        ProvisioningRecord.model_validate_json(line)


def test_source_descriptor_is_a_rich_ad_schema(dataset: Dataset) -> None:
    """The source has ~25+ attributes of every type and NCD on for all operations."""
    source = SourceDescriptor.model_validate(dataset.source)
    attributes = {a.name: a for a in source.accountSchema.attributes}
    assert len(attributes) >= 25
    assert {a.type.value for a in attributes.values()} == {
        "STRING",
        "INT",
        "LONG",
        "BOOLEAN",
        "DATE",
    }
    member_of = attributes["memberOf"]
    assert member_of.isMulti and member_of.isEntitlement and member_of.isGroup
    assert attributes["proxyAddresses"].isMulti and not attributes["proxyAddresses"].isEntitlement
    config = source.nativeChangeDetectionConfig
    assert config.enabled and config.allEntitlements and len(config.operations) == 3
    assert 0 < len(config.selectedNonEntitlementAttributes) < len(attributes)


def test_records_look_like_ad_accounts(out_dir: Path) -> None:
    """Records average 2-4 KB with 5-60 groups, braced uuids, DNs, and a few uncorrelated."""
    raw = (out_dir / "previous.jsonl").read_bytes().splitlines()
    assert 2000 <= sum(map(len, raw)) / len(raw) <= 4000
    accounts = [json.loads(line) for line in raw]
    assert all(5 <= len(a["attributes"]["memberOf"]) <= 60 for a in accounts)
    assert all(UUID.match(a["uuid"]) for a in accounts)
    assert all(
        re.match(r"^CN=[^,]+,(OU=[^,]+,)+DC=example,DC=com$", a["nativeIdentity"]) for a in accounts
    )
    assert len({a["uuid"] for a in accounts}) == len({a["nativeIdentity"] for a in accounts}) == N
    uncorrelated = [a for a in accounts if not a["correlated"]]
    assert 0 < len(uncorrelated) < N * 0.05
    assert all(a["identity"] is None for a in uncorrelated)
    with_manager = [a for a in accounts if a["identity"] and a["identity"]["manager"]]
    assert len(with_manager) > N * 0.8


def test_changes_match_the_plan(dataset: Dataset, out_dir: Path) -> None:
    """Monitored changes hit exactly the planned accounts, about the requested fraction."""
    source = json.loads((out_dir / "source.json").read_text())
    monitored = [
        *source["nativeChangeDetectionConfig"]["selectedNonEntitlementAttributes"],
        "memberOf",
    ]
    previous = {a["uuid"]: a for a in _lines(out_dir / "previous.jsonl")}
    current = {a["uuid"]: a for a in _lines(out_dir / "current.jsonl")}
    by_dn = {a["nativeIdentity"]: a for a in previous.values()}
    for record in _lines(out_dir / "provisioning.jsonl"):
        _apply(by_dn[record["input"]["key"]["simple"]["id"]], record)
    changed = [
        uuid
        for uuid in previous.keys() & current.keys()
        if _monitored(previous[uuid], monitored) != _monitored(current[uuid], monitored)
    ]
    assert len(changed) == dataset.expected_counts()["ACCOUNT_UPDATED"]
    assert abs(len(changed) - N * CHANGED) <= N * 0.01
    assert len(current.keys() - previous.keys()) == dataset.expected_counts()["ACCOUNT_CREATED"] > 0
    deleted = len(previous.keys() - current.keys())
    assert deleted == dataset.expected_counts()["ACCOUNT_DELETED"] > 0
    assert deleted / N * 100 <= source["deleteThreshold"]
    renamed = [u for u in changed if previous[u]["nativeIdentity"] != current[u]["nativeIdentity"]]
    assert len(renamed) == len(dataset.renamed) > 0


def test_current_snapshot_is_shuffled(dataset: Dataset, out_dir: Path) -> None:
    """The current snapshot's lines are not in the previous snapshot's order."""
    previous_order = [a["uuid"] for a in _lines(out_dir / "previous.jsonl")]
    current_order = [a["uuid"] for a in _lines(out_dir / "current.jsonl")]
    survivors = set(current_order)
    assert current_order[: N // 2] != [u for u in previous_order if u in survivors][: N // 2]


def test_catalog_misses_some_groups(dataset: Dataset, out_dir: Path) -> None:
    """The catalog covers most but not all groups that accounts hold."""
    catalogued = {e["value"] for e in _lines(out_dir / "catalog.jsonl")}
    held = {g for a in _lines(out_dir / "previous.jsonl") for g in a["attributes"]["memberOf"]}
    assert held - catalogued
    assert len(held & catalogued) > 0.9 * len(held)


def test_generate_rejects_bad_arguments() -> None:
    """A non-positive size or a fraction outside [0, 1] is refused."""
    with pytest.raises(ValueError):
        generate(0, 0.1, 1)
    with pytest.raises(ValueError):
        generate(10, 1.5, 1)


def test_cli_writes_the_five_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command line writes the five files and prints the expected event counts."""
    assert (
        main(["--accounts", "40", "--changed", "0.2", "--seed", "9", "--out", str(tmp_path)]) == 0
    )
    assert len(_lines(tmp_path / "previous.jsonl")) == 40
    assert "ACCOUNT_UPDATED': 8" in capsys.readouterr().out


# ------------------------------------------------------------------------------ examples


def test_example_files_validate() -> None:
    """Every example file validates against the contract models."""
    SourceDescriptor.model_validate_json((EXAMPLES / "source.json").read_bytes())
    for name in ("previous.jsonl", "current.jsonl"):
        for line in (EXAMPLES / name).read_bytes().splitlines():
            Account.model_validate_json(line)
    for line in (EXAMPLES / "catalog.jsonl").read_bytes().splitlines():
        CatalogEntry.model_validate_json(line)
    for line in (EXAMPLES / "provisioning.jsonl").read_bytes().splitlines():
        ProvisioningRecord.model_validate_json(line)


def test_examples_show_every_case_the_readme_promises() -> None:
    """The examples hold Ann's seed change, a rename, a new, a deleted and a provisioned account."""
    previous = {a["uuid"]: a for a in _lines(EXAMPLES / "previous.jsonl")}
    current = {a["uuid"]: a for a in _lines(EXAMPLES / "current.jsonl")}
    ann = "{08ee6c6d-7d02-4978-9417-d92ba6a5ed50}"
    receivable, payable = (
        f"CN={g},OU=Groups,DC=example,DC=com" for g in ("AccountsReceivable", "AccountsPayable")
    )
    assert receivable in previous[ann]["attributes"]["memberOf"]
    assert payable in set(current[ann]["attributes"]["memberOf"]) - set(
        previous[ann]["attributes"]["memberOf"]
    )
    assert "User Account is Disabled" in current[ann]["attributes"]["accountFlags"]
    assert len(current.keys() - previous.keys()) == 1
    assert len(previous.keys() - current.keys()) == 1
    both = previous.keys() & current.keys()
    assert (
        len([u for u in both if previous[u]["nativeIdentity"] != current[u]["nativeIdentity"]]) == 1
    )
    assert any(not a["correlated"] and a["identity"] is None for a in current.values())
    catalogued = {e["value"] for e in _lines(EXAMPLES / "catalog.jsonl")}
    held = {g for a in current.values() for g in a["attributes"]["memberOf"]}
    assert len(held - catalogued) == 1
    (record,) = _lines(EXAMPLES / "provisioning.jsonl")
    target = {a["nativeIdentity"]: a for a in previous.values()}[
        record["input"]["key"]["simple"]["id"]
    ]
    assert {c["op"] for c in record["input"]["changes"]} == {"Add", "Set"}
    _apply(target, record)
    after = current[target["uuid"]]["attributes"]
    assert target["attributes"]["title"] == after["title"]
    assert set(target["attributes"]["memberOf"]) == set(after["memberOf"])
