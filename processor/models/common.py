"""What every record model shares: attribute values, identifiers, instants, the input and
output bases, and the enumerations both sides use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, TypeGuard

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
)

# --------------------------------------------------------------------------- values

#: A scalar attribute value. Strict types keep ``"5"`` and ``5`` apart so that the
#: typed comparison of R4 is done by the core, not by the parser.
Scalar = StrictStr | StrictBool | StrictInt | StrictFloat | None
#: An attribute value: a scalar or a list of scalars.
AttributeValue = Scalar | list[Scalar]

#: The exact types :data:`Scalar`'s strict union returns as they are (never a subclass).
_PLAIN_SCALARS = frozenset({str, bool, int, float, type(None)})


def plain_attributes(attributes: object) -> TypeGuard[dict[str, AttributeValue]]:
    """Whether ``attributes`` is an attribute map that ``dict[str, AttributeValue]`` takes as
    it is: a dict of ``str`` keys to values of the exact types ``str``, ``bool``, ``int``,
    ``float`` or ``None``, or lists of them (what JSON decoding gives). The strict union
    accepts each of these and returns it unchanged, so validating them is only a copy;
    ``False`` proves nothing (the full validation decides, and gives the reason).
    A property test checks it against the validation (``tests/unit/test_plain_attributes.py``).
    """
    if type(attributes) is not dict:
        return False
    plain = _PLAIN_SCALARS
    for name, value in attributes.items():
        if type(name) is not str:
            return False
        kind = type(value)
        if kind is list:
            for item in value:
                if type(item) not in plain:
                    return False
        elif kind not in plain:
            return False
    return True


#: Longest source id, in characters.
MAX_SOURCE_ID_CHARS = 128
#: What a source id may hold: ASCII letters, digits, ``.``, ``_``, ``:`` and ``-``. Never ``/``,
#: which separates the parts of record and state keys: no source's keys can then be a prefix
#: of another's (``hr`` and ``hr/payroll`` would share ``a/hr/``).
SOURCE_ID_PATTERN = r"^[A-Za-z0-9._:-]+$"
SourceId = Annotated[
    str, Field(min_length=1, max_length=MAX_SOURCE_ID_CHARS, pattern=SOURCE_ID_PATTERN)
]
#: Longest aggregation id, in characters (they are kept per running aggregation).
MAX_AGGREGATION_ID_CHARS = 128
AggregationId = Annotated[str, Field(min_length=1, max_length=MAX_AGGREGATION_ID_CHARS)]


def _instant_text(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time text")  # never a number of seconds
    return value


#: An instant of the stream and of provisioning (``startedAt``, ``completedAt``): RFC 3339
#: text with a time-zone offset ("Z" or +hh:mm). Parsed here and nowhere else, so ``diff``,
#: ``replay`` and the worker accept and refuse the same texts (one without an offset is bad
#: input everywhere).
Instant = Annotated[AwareDatetime, BeforeValidator(_instant_text)]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def epoch_ms(moment: datetime) -> int:
    """Whole milliseconds since the epoch of an aware instant (floored, exact)."""
    return (moment - _EPOCH) // _MILLISECOND


class InputModel(BaseModel):
    """Base of input models: unknown fields are ignored (forward compatible)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class OutputModel(BaseModel):
    """Base of output models: exact, no unknown fields.

    Their JSON Schemas describe what is written (serialization mode): a field with a default,
    such as ``eventType`` or a ``type`` constant, is always in the output, so it is required.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_serialization_defaults_required=True
    )


# --------------------------------------------------------------------------- enumerations


class Operation(StrEnum):
    ACCOUNT_UPDATED = "ACCOUNT_UPDATED"
    ACCOUNT_CREATED = "ACCOUNT_CREATED"
    ACCOUNT_DELETED = "ACCOUNT_DELETED"


class ChangeType(StrEnum):
    ATTRIBUTES_CHANGED = "ATTRIBUTES_CHANGED"
    ENTITLEMENTS_ADDED = "ENTITLEMENTS_ADDED"
    ENTITLEMENTS_REMOVED = "ENTITLEMENTS_REMOVED"


class ChangeOp(StrEnum):
    SET = "Set"
    ADD = "Add"
    REMOVE = "Remove"
