"""Generate the published JSON Schemas (draft 2020-12) from the models.

``schemas/`` holds one file per contract; ``tests/contract`` fails when the committed files
differ from what :func:`generate` returns. Regenerate with ``make schemas`` (that is,
``python -m processor.schemas schemas``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from processor import models

DIALECT = "https://json-schema.org/draft/2020-12/schema"
ID_BASE = "https://ncd-processor.dev/schemas/"

#: file stem -> (model or type, title, description)
CONTRACTS: dict[str, tuple[Any, str]] = {
    "source-descriptor": (models.SourceDescriptor, "Source descriptor (docs/records.md)"),
    "account": (models.Account, "Account record (docs/records.md)"),
    "catalog-entry": (models.CatalogEntry, "Entitlement catalog entry (docs/records.md)"),
    "provisioning-record": (
        models.ProvisioningRecord,
        "Provisioning record: the platform's own std:account:update (docs/records.md)",
    ),
    "aggregation-record": (
        models.AggregationRecord,
        "Aggregation record on ncd.aggregations (docs/records.md)",
    ),
    "account-updated-event": (
        models.AccountUpdatedEvent,
        "ACCOUNT_UPDATED event (docs/records.md)",
    ),
    "account-created-event": (
        models.AccountCreatedEvent,
        "ACCOUNT_CREATED event (docs/records.md)",
    ),
    "account-deleted-event": (
        models.AccountDeletedEvent,
        "ACCOUNT_DELETED event (docs/records.md)",
    ),
    "remediation-command": (
        models.RemediationCommand,
        "Remediation command on ncd.remediations: a std:account:update reverting one event",
    ),
}


#: What the processor writes: described as serialised, so that every field it always writes
#: (``eventType``, the ``type`` constants, the change lists) is required.
OUTPUTS = frozenset(
    {
        "account-updated-event",
        "account-created-event",
        "account-deleted-event",
        "remediation-command",
    }
)


def schema_for(stem: str) -> dict[str, Any]:
    """The JSON Schema of one contract, with ``$schema``, ``$id`` and title set.

    Inputs are described as they are accepted (optional fields have defaults), outputs as
    they are written (:data:`OUTPUTS`).
    """
    target, description = CONTRACTS[stem]
    mode: JsonSchemaMode = "serialization" if stem in OUTPUTS else "validation"
    if isinstance(target, type) and issubclass(target, BaseModel):
        body = target.model_json_schema(mode=mode)
    else:
        body = TypeAdapter(target).json_schema(mode=mode)
    body.pop("title", None)
    body.pop("description", None)
    return {
        "$schema": DIALECT,
        "$id": f"{ID_BASE}{stem}.schema.json",
        "title": stem,
        "description": description,
        **body,
    }


def render(schema: dict[str, Any]) -> str:
    """Canonical text of a schema file (stable key order, trailing newline)."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    """File name -> file text for every published schema."""
    return {f"{stem}.schema.json": render(schema_for(stem)) for stem in CONTRACTS}


def write(directory: Path) -> list[Path]:
    """Write every schema into ``directory``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generate().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m processor.schemas DIR``: regenerate the schema files."""
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0] if args else "schemas")
    for path in write(directory):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
