"""Deterministic synthetic Active-Directory-like inputs (docs/records.md, inputs) for benchmarks.

Every account is a pure function of ``(seed, index)``, so snapshots of 100k accounts are
written line by line without being held in memory: a :class:`Dataset` keeps only the plan
(which indices are deleted, changed, renamed, provisioned, new), never the records.

    python bench/generate.py --accounts 100000 --changed 0.05 --seed 7 --out bench/out/100k
    python -m bench.generate --accounts 1000 --out /tmp/ncd-1k
"""

from __future__ import annotations

import argparse
import hashlib
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

Record = dict[str, Any]

DOMAIN_DN = "DC=example,DC=com"
MAIL_DOMAIN = "example.com"
#: New and deleted accounts, each a share of the previous snapshot: well under the default
#: 10 % delete threshold (R10), so the deletions are emitted.
NEW_SHARE = 0.005
DELETED_SHARE = 0.005
#: Accounts whose only differences must give no event (memberOf order, unmonitored counters).
NOISE_SHARE = 0.01
#: Accounts changed by the platform itself (std:account:update), reflected in current (R15).
PROVISIONED_SHARE = 0.001
#: Share of the changed accounts that are also renamed (same uuid, moved to a new OU).
RENAME_SHARE = 0.03
#: One account in this many is an uncorrelated service account.
UNCORRELATED_EVERY = 50
#: Every this-many-th group of the universe is left out of the catalog (R13 misses).
CATALOG_MISS_EVERY = 20
MIN_GROUPS, MAX_GROUPS = 5, 60

PREVIOUS_AT = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
PROVISIONED_AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
CURRENT_AT = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)

FIRST = (  # noqa: SIM905 (a word list reads better than quoted names)
    "Aaron Abigail Adam Alice Amir Ann Ben Bianca Carlos Chen Chloe Daniel Dana David Elena "
    "Emma Farah Felix Grace Hana Hugo Ivan Isla Jack Jana Jorge Julia Kai Karen Lars Leah Liam "
    "Lucia Maya Mei Mohammed Nadia Noah Olga Omar Pablo Priya Quinn Rafael Rosa Sam Sara Sofia "
    "Tariq Tess Uma Victor Vera Wei William Xena Yara Yusuf Zoe Zane Martena Ingrid Kofi Lena"
).split()
LAST = (  # noqa: SIM905 (a word list reads better than quoted names)
    "Abbott Adams Ali Andrew Baker Brown Castillo Chen Costa Davis Dubois English Evans Fischer "
    "Garcia Gupta Hansen Heath Ito Jensen Johnson Khan Kim Kowalski Larsen Lee Lopez Martin "
    "Meyer Moreau Murphy Nakamura Nguyen Novak Okafor Olsen Patel Perez Quinn Rossi Sato "
    "Schmidt Silva Singh Smith Suzuki Tanaka Taylor Thomas Torres Usman Vargas Wagner Walker "
    "Wang Weber Wilson Xu Yamada Young Zhang Ziegler Bauer Moreno"
).split()
#: Odd, so that ``i * NAME_STRIDE`` modulo the (even) number of name pairs is a bijection.
NAME_STRIDE = 2654435761
DEPARTMENTS: dict[str, tuple[str, ...]] = {
    "Call Center": ("Call Center Representative", "Call Center Manager", "Team Lead"),
    "Finance": ("Accountant", "Financial Analyst", "Controller", "Payroll Specialist"),
    "Engineering": ("Software Engineer", "Senior Software Engineer", "Engineering Manager"),
    "Sales": ("Account Executive", "Sales Manager", "Sales Engineer"),
    "Marketing": ("Marketing Specialist", "Content Writer", "Marketing Manager"),
    "Human Resources": ("HR Generalist", "Recruiter", "HR Manager"),
    "IT": ("System Administrator", "Help Desk Analyst", "Network Engineer"),
    "Legal": ("Counsel", "Paralegal", "Compliance Officer"),
    "Operations": ("Operations Analyst", "Logistics Coordinator", "Operations Manager"),
    "Research": ("Research Scientist", "Lab Technician", "Research Director"),
}
DEPARTMENT_NAMES = tuple(DEPARTMENTS)
OFFICES = (
    ("100 Main Street", "Austin", "TX", "78701"),
    ("2200 Mission College Blvd", "Santa Clara", "CA", "95054"),
    ("1 Harbor Way", "Boston", "MA", "02110"),
    ("455 Market Street", "San Francisco", "CA", "94105"),
    ("77 Lake Shore Drive", "Chicago", "IL", "60601"),
    ("12 Peachtree Road", "Atlanta", "GA", "30303"),
)
GROUP_PREFIXES = ("SG", "DL", "APP", "GRP")
GROUP_RESOURCES = (  # noqa: SIM905 (a word list reads better than quoted names)
    "SharePoint Jira Confluence Salesforce Workday SAP Oracle Tableau Snowflake GitHub "
    "Jenkins VPN FileShare Printers Payroll Expenses CRM Wiki Backup Reporting"
).split()
GROUP_ACCESS = ("Read", "Write", "Admin", "Users")
OBJECT_CLASS = ["top", "person", "organizationalPerson", "user"]


def _digest(seed: int, tag: str, index: int) -> int:
    """A stable 128-bit number for (seed, tag, index), independent of any RNG sequence."""
    data = f"{seed}:{tag}:{index}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=16).digest(), "big")


def _hex_id(seed: int, tag: str, index: int) -> str:
    return f"{_digest(seed, tag, index):032x}"


def _uuid(seed: int, index: int) -> str:
    h = f"{_digest(seed, 'uuid', index):032x}"
    return f"{{{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}}}"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Person:
    """The index-derived facts about one account, also needed to name its manager."""

    first: str
    last: str
    cn: str
    sam: str
    department: str
    service: bool

    def dn(self, department: str | None = None) -> str:
        if self.service:
            return f"CN={self.cn},OU=Service Accounts,{DOMAIN_DN}"
        return f"CN={self.cn},OU={department or self.department},OU=People,{DOMAIN_DN}"

    @property
    def mail(self) -> str:
        return f"{self.sam.lower()}@{MAIL_DOMAIN}"


def person(seed: int, index: int) -> Person:
    """Names unique per index: a bijection onto name pairs, then a numeric suffix."""
    pairs = len(FIRST) * len(LAST)
    j = (index * NAME_STRIDE + seed * 7919) % pairs
    suffix = str(index // pairs + 1) if index >= pairs else ""
    first, last = FIRST[j % len(FIRST)], LAST[j // len(FIRST)]
    department = DEPARTMENT_NAMES[_digest(seed, "dept", index) % len(DEPARTMENT_NAMES)]
    if _digest(seed, "svc", index) % UNCORRELATED_EVERY == 0:
        name = f"svc-{GROUP_RESOURCES[index % len(GROUP_RESOURCES)].lower()}-{index}"
        return Person("", "", name, name, "IT", True)
    cn = f"{first} {last}{' ' + suffix if suffix else ''}"
    return Person(first, last, cn, f"{first}.{last}{suffix}", department, False)


def group_universe(seed: int, n_accounts: int) -> tuple[str, ...]:
    """The group DNs of the directory, in a seeded order (a few hundred to a few thousand)."""
    names = [
        (p, d, r, a)
        for p in GROUP_PREFIXES
        for d in DEPARTMENT_NAMES
        for r in GROUP_RESOURCES
        for a in GROUP_ACCESS
    ]
    random.Random(f"{seed}:groups").shuffle(names)
    size = min(len(names), max(200, n_accounts // 25))
    return tuple(
        f"CN={p}-{d.replace(' ', '')}-{r}-{a},OU=Groups,OU={d},{DOMAIN_DN}"
        for p, d, r, a in names[:size]
    )


def _group_label(dn: str) -> str:
    return dn[3 : dn.index(",")].replace("-", " ")


@dataclass(frozen=True)
class Dataset:
    """The plan of one synthetic source: records are generated on demand from the indices."""

    seed: int
    n_accounts: int
    changed_fraction: float
    source: Record
    groups: tuple[str, ...]
    deleted: frozenset[int]
    changed: frozenset[int]
    renamed: frozenset[int]
    provisioned: frozenset[int]
    noisy: frozenset[int]
    created: range

    def expected_counts(self) -> dict[str, int]:
        """The events a correct processor emits for this dataset, per event type."""
        return {
            "ACCOUNT_UPDATED": len(self.changed),
            "ACCOUNT_CREATED": len(self.created),
            "ACCOUNT_DELETED": len(self.deleted),
        }

    def previous(self) -> Iterator[Record]:
        """The previous snapshot, in index order."""
        for index in range(self.n_accounts):
            yield self.account(index)

    def current_order(self) -> list[int]:
        """Indices of the current snapshot in their (shuffled) file order."""
        order = [i for i in range(self.n_accounts) if i not in self.deleted]
        order.extend(self.created)
        random.Random(f"{self.seed}:order").shuffle(order)
        return order

    def current(self) -> Iterator[Record]:
        """The current snapshot, shuffled."""
        for index in self.current_order():
            yield self.current_account(index)

    def account(self, index: int) -> Record:
        """An account as it was first aggregated (the previous snapshot's line)."""
        return _build_account(self.seed, index, self.groups)

    def current_account(self, index: int) -> Record:
        """An account as the current snapshot has it."""
        acct = self.account(index)
        rng = random.Random(f"{self.seed}:current:{index}")
        if index in self.changed:
            _change(acct, rng, self.groups, rename=index in self.renamed)
        elif index in self.provisioned:
            _apply(acct["attributes"], self.provisioning_changes(index, acct))
        elif index in self.noisy:
            attrs = acct["attributes"]
            attrs["memberOf"] = sorted(attrs["memberOf"], key=lambda _: rng.random())
            attrs["badPwdCount"] += 1
            attrs["logonCount"] += 3
        return acct

    def provisioning_changes(self, index: int, acct: Record) -> list[Record]:
        """The platform's own change to a provisioned account: Add a group, Set a title."""
        rng = random.Random(f"{self.seed}:prov:{index}")
        attrs = acct["attributes"]
        held = set(attrs["memberOf"])
        group = next(g for g in rng.sample(self.groups, len(self.groups)) if g not in held)
        titles = [t for title_set in DEPARTMENTS.values() for t in title_set]
        title = rng.choice([t for t in titles if t != attrs["title"]])
        return [
            {"op": "Add", "attribute": "memberOf", "value": [group]},
            {"op": "Set", "attribute": "title", "value": title},
        ]

    def provisioning(self) -> Iterator[Record]:
        """std:account:update records; every other one carries the complete account as output."""
        for n, index in enumerate(sorted(self.provisioned)):
            before = self.account(index)
            key = {"simple": {"id": before["nativeIdentity"]}}
            output: Record = {}
            if n % 2:
                after = self.current_account(index)
                output = {"key": key, "disabled": after["disabled"], "locked": after["locked"]}
                output["attributes"] = after["attributes"]
            yield {
                "sourceId": self.source["id"],
                "command": "std:account:update",
                "input": {"key": key, "changes": self.provisioning_changes(index, before)},
                "output": output,
                "completedAt": _iso(PROVISIONED_AT + timedelta(seconds=n)),
            }

    def catalog(self) -> Iterator[Record]:
        """Catalog entries for every group but one in ``CATALOG_MISS_EVERY``."""
        for n, dn in enumerate(self.groups):
            if n % CATALOG_MISS_EVERY == CATALOG_MISS_EVERY // 2:
                continue
            owner = None
            owner_index = _digest(self.seed, "group-owner", n) % self.n_accounts
            owner_person = person(self.seed, owner_index)
            if n % 3 and not owner_person.service:
                owner_id = _hex_id(self.seed, "identity", owner_index)
                owner = {"id": owner_id, "name": owner_person.cn}
            yield {
                "attribute": "memberOf",
                "value": dn,
                "id": _hex_id(self.seed, "entitlement", n),
                "name": _group_label(dn),
                "owner": owner,
            }


def _schema_attribute(name: str, kind: str = "STRING", multi: bool = False) -> Record:
    return {"name": name, "type": kind, "isMulti": multi, "isEntitlement": False}


def source_descriptor(seed: int) -> Record:
    """An AD source with ~30 attributes, NCD on for all operations (see docs/records.md)."""
    strings = (  # noqa: SIM905 (a word list reads better than quoted names)
        "distinguishedName sAMAccountName userPrincipalName displayName givenName sn title "
        "department company mail telephoneNumber mobile streetAddress l st postalCode "
        "physicalDeliveryOfficeName description manager employeeID"
    ).split()
    attributes = [_schema_attribute(name) for name in strings]
    attributes += [_schema_attribute(n, "INT") for n in ("employeeNumber", "badPwdCount")]
    attributes += [_schema_attribute("logonCount", "INT"), _schema_attribute("lastLogon", "LONG")]
    attributes.append(_schema_attribute("accountDisabled", "BOOLEAN"))
    attributes += [
        _schema_attribute(n, "DATE") for n in ("whenCreated", "whenChanged", "pwdLastSet")
    ]
    attributes += [_schema_attribute(n, multi=True) for n in ("objectClass", "proxyAddresses")]
    attributes.append(
        {
            "name": "memberOf",
            "type": "STRING",
            "isMulti": True,
            "isEntitlement": True,
            "isGroup": True,
        }
    )
    return {
        "id": _hex_id(seed, "source", 0),
        "name": "Active Directory",
        "alias": "Active Directory [source]",
        "owner": {"id": _hex_id(seed, "owner", 0), "name": "Aaron Andrew", "email": ""},
        "governanceGroup": {"id": _hex_id(seed, "governance", 0), "name": "AD Owners"},
        "accountSchema": {
            "identityAttribute": "distinguishedName",
            "displayAttribute": "sAMAccountName",
            "attributes": attributes,
        },
        "nativeChangeDetectionConfig": {
            "enabled": True,
            "operations": ["ACCOUNT_UPDATED", "ACCOUNT_CREATED", "ACCOUNT_DELETED"],
            "allEntitlements": True,
            "allNonEntitlementAttributes": False,
            "selectedEntitlements": [],
            "selectedNonEntitlementAttributes": [
                "title",
                "department",
                "proxyAddresses",
                "accountDisabled",
            ],
        },
        "caseInsensitive": False,
        "deleteThreshold": 10,
    }


def _build_account(seed: int, index: int, groups: Sequence[str]) -> Record:
    rng = random.Random(f"{seed}:{index}")
    me = person(seed, index)
    street, city, state, postal = OFFICES[rng.randrange(len(OFFICES))]
    title = "Service Account" if me.service else rng.choice(DEPARTMENTS[me.department])
    created = PREVIOUS_AT - timedelta(days=rng.randrange(30, 3000), seconds=rng.randrange(86400))
    changed = created + (PREVIOUS_AT - created) * rng.random()
    n_groups = MIN_GROUPS + int((MAX_GROUPS - MIN_GROUPS) * rng.random() ** 2)
    manager: Person | None = None
    manager_index = _digest(seed, "manager", index) % index if index else 0
    if index and not me.service:
        candidate = person(seed, manager_index)
        manager = None if candidate.service else candidate
    secondary = f"{me.first[:1]}{me.last}".lower() or me.sam
    attributes: Record = {
        "distinguishedName": me.dn(),
        "sAMAccountName": me.sam,
        "userPrincipalName": me.mail,
        "displayName": me.cn,
        "givenName": me.first or None,
        "sn": me.last or None,
        "title": title,
        "department": me.department,
        "company": "Example Corp",
        "mail": me.mail,
        "telephoneNumber": f"+1 512 555 {rng.randrange(10000):04d}",
        "mobile": f"+1 737 555 {rng.randrange(10000):04d}",
        "streetAddress": street,
        "l": city,
        "st": state,
        "postalCode": postal,
        "physicalDeliveryOfficeName": f"{city} {rng.randrange(1, 12)}F",
        "description": f"{title}, {me.department}, {city} office",
        "manager": manager.dn() if manager else None,
        "employeeID": f"E{index:07d}",
        "employeeNumber": 100000 + index,
        "badPwdCount": rng.randrange(4),
        "logonCount": rng.randrange(5000),
        "lastLogon": 133_000_000_000_000_000 + rng.randrange(10**15),
        "accountDisabled": rng.random() < 0.02,
        "whenCreated": _iso(created),
        "whenChanged": _iso(changed),
        "pwdLastSet": _iso(changed - timedelta(days=rng.randrange(90))),
        "objectClass": list(OBJECT_CLASS),
        "proxyAddresses": [
            f"SMTP:{me.mail}",
            f"smtp:{secondary}@{MAIL_DOMAIN}",
            f"smtp:{me.sam.lower()}@example.mail.onmicrosoft.com",
            f"X500:/o=ExchangeLabs/ou=Exchange Administrative Group/cn=Recipients/cn={index:x}",
        ],
        "memberOf": rng.sample(groups, min(n_groups, len(groups))),
    }
    identity = None
    if not me.service:
        identity = {
            "id": _hex_id(seed, "identity", index),
            "name": me.cn,
            "alias": me.sam,
            "email": me.mail,
            "manager": None
            if manager is None
            else {
                "id": _hex_id(seed, "identity", manager_index),
                "name": manager.cn,
                "email": manager.mail,
            },
        }
    return {
        "id": _hex_id(seed, "account", index),
        "nativeIdentity": me.dn(),
        "uuid": _uuid(seed, index),
        "name": me.sam,
        "correlated": not me.service,
        "identity": identity,
        "disabled": attributes["accountDisabled"],
        "locked": False,
        "attributes": attributes,
    }


CHANGE_KINDS = ("title", "department", "groups_added", "groups_removed", "proxyAddresses")
CHANGE_WEIGHTS = (25, 15, 25, 20, 15)


def _change(acct: Record, rng: random.Random, groups: Sequence[str], *, rename: bool) -> None:
    """A native change of at least one monitored attribute (so exactly one ACCOUNT_UPDATED)."""
    attrs = acct["attributes"]
    kinds = set(rng.choices(CHANGE_KINDS, CHANGE_WEIGHTS, k=1 + (rng.random() < 0.3)))
    if rename:
        kinds.add("department")
    if "title" in kinds:
        pool = (*DEPARTMENTS.get(attrs["department"], ()), "Team Lead", "Consultant")
        attrs["title"] = rng.choice([t for t in pool if t != attrs["title"]])
    if "department" in kinds:
        department = rng.choice([d for d in DEPARTMENT_NAMES if d != attrs["department"]])
        attrs["department"] = department
        if rename:
            cn = acct["nativeIdentity"][3 : acct["nativeIdentity"].index(",")]
            dn = f"CN={cn},OU={department},OU=People,{DOMAIN_DN}"
            acct["nativeIdentity"] = attrs["distinguishedName"] = dn
    held = set(attrs["memberOf"])
    if "groups_removed" in kinds:  # before adding, so an added group is never removed again
        for _ in range(rng.randint(1, 3)):
            attrs["memberOf"].pop(rng.randrange(len(attrs["memberOf"])))
    if "groups_added" in kinds:
        extra = [g for g in rng.sample(groups, min(len(groups), 10)) if g not in held]
        attrs["memberOf"] = attrs["memberOf"] + extra[: rng.randint(1, 3)]
    if "proxyAddresses" in kinds:
        alias = f"smtp:{acct['name'].lower()}.{rng.randrange(100)}@{MAIL_DOMAIN}"
        attrs["proxyAddresses"] = [*attrs["proxyAddresses"][:-1], alias]
    attrs["whenChanged"] = _iso(CURRENT_AT - timedelta(seconds=rng.randrange(80000)))


def _apply(attrs: Record, changes: list[Record]) -> None:
    """Apply Set / Add changes as the connector did (only the kinds this generator emits)."""
    for change in changes:
        if change["op"] == "Set":
            attrs[change["attribute"]] = change["value"]
        else:
            attrs[change["attribute"]] = attrs[change["attribute"]] + change["value"]


def generate(n_accounts: int, changed: float, seed: int) -> Dataset:
    """Plan a dataset of ``n_accounts`` previous accounts, ``changed`` of them changed natively."""
    if n_accounts < 1:
        raise ValueError("n_accounts must be at least 1")
    if not 0.0 <= changed <= 1.0:
        raise ValueError("changed must be a fraction between 0 and 1")
    at_least_one = 1 if n_accounts >= 20 else 0  # one deletion stays under 10 % from 20 on

    def share(fraction: float) -> int:
        return max(at_least_one, round(n_accounts * fraction))

    rng = random.Random(f"{seed}:plan")
    order = list(range(n_accounts))
    rng.shuffle(order)
    n_deleted, n_provisioned = share(DELETED_SHARE), share(PROVISIONED_SHARE)
    n_noisy = round(n_accounts * NOISE_SHARE)
    taken = n_deleted + n_provisioned + n_noisy
    n_changed = min(round(n_accounts * changed), max(0, n_accounts - taken))
    cut = [n_deleted, n_deleted + n_provisioned, taken, taken + n_changed]
    changed_set = order[cut[2] : cut[3]]
    people = [i for i in changed_set if not person(seed, i).service]
    return Dataset(
        seed=seed,
        n_accounts=n_accounts,
        changed_fraction=changed,
        source=source_descriptor(seed),
        groups=group_universe(seed, n_accounts),
        deleted=frozenset(order[: cut[0]]),
        provisioned=frozenset(order[cut[0] : cut[1]]),
        noisy=frozenset(order[cut[1] : cut[2]]),
        changed=frozenset(changed_set),
        renamed=frozenset(people[: round(len(changed_set) * RENAME_SHARE)]),
        created=range(n_accounts, n_accounts + share(NEW_SHARE)),
    )


def _write_lines(path: Path, records: Iterator[Record]) -> tuple[int, int]:
    count = size = 0
    with path.open("wb", buffering=1 << 20) as out:
        for record in records:
            line = orjson.dumps(record) + b"\n"
            out.write(line)
            count, size = count + 1, size + len(line)
    return count, size


def write(dataset: Dataset, out_dir: Path | str) -> dict[str, tuple[int, int]]:
    """Write the five files of a dataset into ``out_dir``; returns (records, bytes) per file."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = orjson.dumps(dataset.source, option=orjson.OPT_INDENT_2) + b"\n"
    (out / "source.json").write_bytes(source)
    return {
        "source.json": (1, len(source)),
        "previous.jsonl": _write_lines(out / "previous.jsonl", dataset.previous()),
        "current.jsonl": _write_lines(out / "current.jsonl", dataset.current()),
        "catalog.jsonl": _write_lines(out / "catalog.jsonl", dataset.catalog()),
        "provisioning.jsonl": _write_lines(out / "provisioning.jsonl", dataset.provisioning()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, default=100_000, help="previous snapshot size")
    parser.add_argument("--changed", type=float, default=0.05, help="fraction changed natively")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    dataset = generate(args.accounts, args.changed, args.seed)
    sizes = write(dataset, args.out)
    for name, (count, size) in sizes.items():
        print(
            f"{name:20} {count:>9} records {size:>13,} bytes {size / max(count, 1):>8.0f} B/record"
        )
    print(f"expected events: {dataset.expected_counts()}")
    print(f"written to {args.out} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
