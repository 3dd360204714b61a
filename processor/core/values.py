"""Normalisation of attribute values: no-value forms (R3), typed comparison (R4), sets (R5).

A *normalised key* is a ``(rank, value)`` tuple; two raw values compare equal exactly when
their keys are equal, and keys sort totally (rank first, then values of one rank, which are
mutually comparable). Ranks: booleans of a STRING attribute, numbers (and, on the typed
attributes, booleans as 0/1), instants, strings, and a sorted tuple of keys for a
single-valued attribute holding several values.

Values keep their exact form: integers stay Python integers of any size, instants keep every
fractional digit, and strings are compared in Unicode NFC (so a name in NFD equals the same
name in NFC) while the raw value is what gets reported.

On a STRING attribute values of different JSON types are different values (``true``, ``1``
and ``"1"`` are three), although Python finds ``True == 1``: raw equality is therefore only
a shortcut through :func:`same_raw`, which also requires booleans to meet booleans.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from processor.models import AttributeType, AttributeValue, Scalar

NormKey = tuple[int, Any]
Normaliser = Callable[[Scalar], NormKey]

_BOOLEAN = 0
_NUMBER = 1
_INSTANT = 2
_STRING = 3
_SEVERAL = 4

_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INT_RE = re.compile(r"[+-]?\d+")
#: The fractional seconds of an ISO 8601 time (after the seconds, before the offset).
_FRACTION_RE = re.compile(r"(?<=\d)[.,](\d+)(?=[Zz+-]|$)")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_RAW_RANK: dict[type, int] = {bool: 0, int: 1, float: 2, str: 3}


def has_value(value: object) -> bool:
    """Whether a scalar counts as a value (R3: ``None`` and ``""`` do not)."""
    return value is not None and value != ""


def nfc(text: str) -> str:
    """``text`` in Unicode NFC; ASCII text (the usual case) is returned as is, at no cost."""
    return text if text.isascii() else unicodedata.normalize("NFC", text)


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


def _parse_instant(text: str) -> tuple[int, str] | None:
    """An ISO 8601 instant as (whole seconds since the epoch, fractional digits), exactly.

    The fractional digits are kept as text without trailing zeros (any number of them:
    Active Directory writes 7), which orders and compares exactly like the fraction itself;
    ``datetime`` would cut them to microseconds. A time without an offset is UTC.
    """
    text = text.strip()
    fraction = ""
    found = _FRACTION_RE.search(text)
    if found is not None:
        fraction = found.group(1).rstrip("0")
        text = text[: found.start()] + text[found.end() :]
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return ((parsed - _EPOCH) // _SECOND, fraction)
    except (ValueError, OverflowError):
        return None


def make_normaliser(attribute_type: AttributeType, case_insensitive: bool) -> Normaliser:
    """The key function of one attribute type (R4); strings fall back to (folded) text."""

    def text_key(text: str) -> NormKey:
        return (_STRING, nfc(text).casefold() if case_insensitive else nfc(text))

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

    def untyped(value: Scalar) -> NormKey:
        # STRING: a boolean is its own value, never the number 0 or 1 (R4).
        return (_BOOLEAN, value) if type(value) is bool else other(value)

    if attribute_type is AttributeType.STRING:
        # The hot path (group DNs): one call per value.
        if case_insensitive:

            def folded(value: Scalar) -> NormKey:
                return (_STRING, nfc(value).casefold()) if type(value) is str else untyped(value)

            return folded

        def exact(value: Scalar) -> NormKey:
            if type(value) is str:
                return (_STRING, value if value.isascii() else nfc(value))
            return untyped(value)

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
        keys = [(_STRING, nfc(i).casefold()) if type(i) is str else normalise(i) for i in items]
    else:
        keys = [
            (_STRING, i if i.isascii() else nfc(i)) if type(i) is str else normalise(i)
            for i in items
        ]
    found: dict[NormKey, Scalar] = dict(zip(keys, items, strict=True))
    if len(found) == len(items):
        return found
    # Duplicates: keep the smallest raw value so the result does not depend on order.
    for key, item in zip(keys, items, strict=True):
        if raw_key(item) < raw_key(found[key]):
            found[key] = item
    return found


def exact_text_changes(
    previous: AttributeValue, current: AttributeValue
) -> tuple[list[Scalar], list[Scalar]] | None:
    """(added, removed) of two lists of ASCII strings on an attribute compared exactly (a
    STRING attribute, not case-folded), as :func:`value_set` would find them: the key of
    such a string is ``(rank, the string)``, one for one, so the sets' differences are those
    of the strings themselves, in the same order. No value (``None``: a created or deleted
    account's side) is an empty list. ``None`` for any other values.

    Group lists are the commonest multi-valued change; this skips building their keys.
    """
    if previous is None:
        previous = []
    if current is None:
        current = []
    if type(previous) is not list or type(current) is not list:
        return None
    try:  # every item a string (else str.join raises), all of them ASCII
        if not "".join(previous).isascii():  # type: ignore[arg-type]  # join checks the items
            return None
        if not "".join(current).isascii():  # type: ignore[arg-type]  # join checks the items
            return None
    except TypeError:
        return None
    before: set[Scalar] = set(previous)
    after: set[Scalar] = set(current)
    before.discard("")  # no value (R3)
    after.discard("")
    # Strings only (checked above), which sort; mypy sees scalars, which need not.
    return sorted(after - before), sorted(before - after)  # type: ignore[type-var]  # strings


def _all_text(items: list[Scalar]) -> bool:
    """Whether every item is a string: then no boolean can meet a number among them.

    ``str.join`` checks the type of every item in C, about ten times faster than a loop over
    ``type()`` on a list of 60 group DNs (docs/decisions.md, "Integers of any size").
    """
    try:
        "".join(items)  # type: ignore[arg-type]  # the check: a non-string raises
    except TypeError:
        return False
    return True


def same_items(previous: AttributeValue, current: AttributeValue) -> bool:
    """Whether two lists of strings hold the same items (then their sets are equal, R5).

    Lists holding anything else are left to the exact comparison (``{True} == {1}``).
    """
    return (
        isinstance(previous, list)
        and isinstance(current, list)
        and set(previous) == set(current)
        and _all_text(previous)
        and _all_text(current)
    )


def _kinds_agree(previous: AttributeValue, current: AttributeValue) -> bool:
    """Given ``previous == current``: whether booleans meet only booleans."""
    if type(previous) is list and type(current) is list:
        return _all_text(previous) or all(
            (type(left) is bool) == (type(right) is bool)
            for left, right in zip(previous, current, strict=True)
        )
    return (type(previous) is bool) == (type(current) is bool)


def same_raw(previous: AttributeValue, current: AttributeValue) -> bool:
    """Whether two raw values are equal with booleans meeting only booleans.

    Equal raw values are equal under every attribute type (R4), so this is a safe shortcut
    before normalising, unlike ``==``, for which ``True == 1``.
    """
    return previous == current and _kinds_agree(previous, current)


def same_attributes(
    previous: Mapping[str, AttributeValue], current: Mapping[str, AttributeValue]
) -> bool:
    """Whether two attribute maps hold the same raw values (see :func:`same_raw`)."""
    if previous != current:
        return False
    for name, value in previous.items():
        # A string equals only a string, None only None, a list of strings only such a list:
        # only the rest needs a look (the list check inline: this runs for every attribute).
        kind = type(value)
        if kind is str or value is None:
            continue
        if kind is list:
            try:
                "".join(value)  # type: ignore[arg-type]  # every item a string, or raises
                continue
            except TypeError:
                pass
        if not _kinds_agree(value, current[name]):
            return False
    return True


def as_items(value: AttributeValue) -> list[Scalar]:
    """A value as a new list of its items (a scalar is a one-item list; ``None`` none)."""
    if isinstance(value, list):
        return list(value)
    return [] if value is None else [value]


def as_text(value: Scalar) -> str:
    """A scalar as text (strings unchanged, others as JSON), e.g. for an entitlement value."""
    return value if isinstance(value, str) else json.dumps(value)
