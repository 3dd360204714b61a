"""Normalisation of attribute values: no-value forms (R3), typed comparison (R4), sets (R5).

A *normalised key* is a ``(rank, value)`` tuple; two raw values compare equal exactly when
their keys are equal, and keys sort totally (rank first, then values of one rank, which are
mutually comparable). Ranks: numbers (and booleans, as 0/1), instants, strings, and a
sorted tuple of keys for a single-valued attribute holding several values.

Booleans share the number rank so that values Python finds equal (``True == 1``,
``1 == 1.0``) are always equal after normalisation too: raw equality is then a safe
shortcut before normalising.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from processor.models import AttributeType, AttributeValue, Scalar

NormKey = tuple[int, Any]
Normaliser = Callable[[Scalar], NormKey]

_NUMBER = 1
_INSTANT = 2
_STRING = 3
_SEVERAL = 4

_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INT_RE = re.compile(r"[+-]?\d+")
_RAW_RANK: dict[type, int] = {bool: 0, int: 1, float: 2, str: 3}


def has_value(value: object) -> bool:
    """Whether a scalar counts as a value (R3: ``None`` and ``""`` do not)."""
    return value is not None and value != ""


def _number(value: int | float) -> NormKey:
    if isinstance(value, float):
        if not math.isfinite(value):
            return (_STRING, repr(value))
        if value.is_integer():
            return (_NUMBER, int(value))
    return (_NUMBER, int(value) if isinstance(value, bool) else value)


def _parse_number(text: str) -> int | float | None:
    text = text.strip()
    if not _NUMBER_RE.fullmatch(text):
        return None
    try:
        if _INT_RE.fullmatch(text):
            return int(text)
        number = float(text)
    except ValueError:  # more digits than int() converts; float() overflows to inf
        try:
            number = float(text)
        except ValueError:
            return None
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() else number


def _parse_instant(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.strip())
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def make_normaliser(attribute_type: AttributeType, case_insensitive: bool) -> Normaliser:
    """The key function of one attribute type (R4); strings fall back to (folded) text."""

    def text_key(text: str) -> NormKey:
        return (_STRING, text.casefold() if case_insensitive else text)

    def parse_text(text: str) -> NormKey:
        if attribute_type in (AttributeType.INT, AttributeType.LONG):
            number = _parse_number(text)
            if number is not None:
                return (_NUMBER, number)
        elif attribute_type is AttributeType.BOOLEAN:
            lowered = text.strip().lower()
            if lowered in ("true", "false"):
                return (_NUMBER, int(lowered == "true"))
        elif attribute_type is AttributeType.DATE:
            instant = _parse_instant(text)
            if instant is not None:
                return (_INSTANT, instant)
        return text_key(text)

    def other(value: Scalar) -> NormKey:
        if isinstance(value, int | float):
            return _number(value)
        return (_STRING, repr(value))

    if attribute_type is AttributeType.STRING:
        # The hot path (group DNs): one call per value.
        if case_insensitive:

            def folded(value: Scalar) -> NormKey:
                return (_STRING, value.casefold()) if type(value) is str else other(value)

            return folded

        def exact(value: Scalar) -> NormKey:
            return (_STRING, value) if type(value) is str else other(value)

        return exact

    def typed(value: Scalar) -> NormKey:
        return parse_text(value) if isinstance(value, str) else other(value)

    return typed


def raw_key(value: Scalar) -> tuple[int, str]:
    """A total order on raw values, to choose among raw values that normalise equal."""
    return (_RAW_RANK.get(type(value), 4), repr(value))


def single_key(value: AttributeValue, normalise: Normaliser) -> NormKey | None:
    """The key of a single-valued attribute; ``None`` for no value (R3).

    A list holding one value compares as that value; several values compare as a set.
    """
    if isinstance(value, list):
        keys = sorted({normalise(item) for item in value if has_value(item)})
        if not keys:
            return None
        return keys[0] if len(keys) == 1 else (_SEVERAL, tuple(keys))
    if not has_value(value):
        return None
    return normalise(value)


def value_set(
    value: AttributeValue, normalise: Normaliser, text_fold: bool | None = None
) -> dict[NormKey, Scalar]:
    """The set of a multi-valued attribute (R5): key -> smallest raw value with that key.

    ``text_fold`` (True/False for STRING attributes, folded or not) inlines the string case
    of ``normalise``, the hot path of group lists.
    """
    if not isinstance(value, list):
        return {normalise(value): value} if has_value(value) else {}
    items: list[Scalar] = [item for item in value if item is not None and item != ""]
    if text_fold is None:
        keys = list(map(normalise, items))
    elif text_fold:
        keys = [(_STRING, i.casefold()) if type(i) is str else normalise(i) for i in items]
    else:
        keys = [(_STRING, i) if type(i) is str else normalise(i) for i in items]
    found: dict[NormKey, Scalar] = dict(zip(keys, items, strict=True))
    if len(found) == len(items):
        return found
    # Duplicates: keep the smallest raw value so the result does not depend on order.
    for key, item in zip(keys, items, strict=True):
        if raw_key(item) < raw_key(found[key]):
            found[key] = item
    return found


def same_items(previous: AttributeValue, current: AttributeValue) -> bool:
    """Whether two lists hold the same raw items (then their sets are equal, R5)."""
    return (
        isinstance(previous, list) and isinstance(current, list) and set(previous) == set(current)
    )


def as_items(value: AttributeValue) -> list[Scalar]:
    """A value as a new list of its items (a scalar is a one-item list; ``None`` none)."""
    if isinstance(value, list):
        return list(value)
    return [] if value is None else [value]


def as_text(value: Scalar) -> str:
    """A scalar as text (strings unchanged, others as JSON), e.g. for an entitlement value."""
    return value if isinstance(value, str) else json.dumps(value)
