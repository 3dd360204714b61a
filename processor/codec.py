"""JSON encoding and decoding, and value-free validation messages.

orjson is the codec (docs/decisions.md: it decodes 3 KB account records 2-3x faster than
the standard library). It turns integers outside 64 bits into floats when decoding and
refuses them when encoding, so both directions keep a standard-library path for them:
integers of any size come out digit for digit (docs/decisions.md, "Integers of any size").
State the worker wrote itself is decoded by msgspec (:func:`loads_trusted`), exact for them.
Error reasons built here never contain input values: account attributes are personal data
and reasons end up in logs, on stderr and in dead-letter headers.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import msgspec
import orjson
from pydantic import BaseModel, ValidationError

from processor.errors import InputError

M = TypeVar("M", bound=BaseModel)

#: Reasons are cut to this length so that a dead-letter header stays small.
MAX_REASON_CHARS = 300
#: The deepest nesting orjson encodes (it decodes up to 1,024 levels).
MAX_ENCODE_DEPTH = 254


#: orjson keeps integers in [-2**63, 2**64 - 1]; any integer literal outside that range has
#: at least 19 digits in a row, so text without such a run decodes exactly with orjson.
LONG_DIGIT_RUN = 19
_DIGITS_ONLY = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))
_LONG_RUN = b"0" * LONG_DIGIT_RUN


def loads(data: bytes | str) -> Any:
    """Decode JSON, raising :class:`InputError` with a value-free reason.

    orjson checks the syntax and decodes; text holding a run of 19 or more digits (perhaps an
    integer beyond 64 bits, which orjson would round to a float) is decoded again by the
    standard library, which keeps integers exact. The check costs one ``bytes.translate``.
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InputError(
            f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if _LONG_RUN in raw.translate(_DIGITS_ONLY):
        # orjson accepted the text, so it is valid JSON with finite numbers only.
        return json.loads(raw)
    return obj


_TRUSTED = msgspec.json.Decoder()


def loads_trusted(data: bytes) -> Any:
    """Decode JSON this process wrote itself (state: :func:`dumps_canonical` of validated
    data), as :func:`loads` would (a property test checks it).

    msgspec decodes integers of any size exactly, so the digit-run check of :func:`loads`
    (a third of its time on a 3 KB account) is not needed; whatever msgspec refuses
    (numbers beyond a double, say) goes through :func:`loads`.
    """
    try:
        return _TRUSTED.decode(data)
    except msgspec.DecodeError:
        return loads(data)


def dumps(obj: Any) -> bytes:
    """Encode JSON compactly; keys keep their insertion order (models dump in field order).

    Integers beyond 64 bits go through the standard library (digit for digit); any other
    value JSON cannot hold raises :class:`InputError`: orjson decodes 1,024 levels of
    nesting but encodes only 254, so a record that decoded may still not encode.
    """
    try:
        return orjson.dumps(obj)
    except orjson.JSONEncodeError as exc:
        return _dumps_fallback(obj, exc, sort_keys=False)


def dumps_canonical(obj: Any) -> bytes:
    """Encode JSON with sorted keys: the same value always gives the same bytes."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:
        return _dumps_fallback(obj, exc, sort_keys=True)


def _dumps_fallback(obj: Any, exc: orjson.JSONEncodeError, *, sort_keys: bool) -> bytes:
    """What orjson refused: integers beyond 64 bits encoded by the standard library, which
    keeps them exact; anything else is bad input (:class:`InputError`, value-free)."""
    if "64-bit" not in str(exc):
        raise _encode_error(exc) from exc
    try:
        text = json.dumps(
            obj, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys, allow_nan=False
        )
    except (TypeError, ValueError, RecursionError) as again:
        raise InputError(_cut(f"cannot be encoded as JSON: {type(again).__name__}")) from again
    return text.encode("utf-8")


def _encode_error(exc: orjson.JSONEncodeError) -> InputError:
    # orjson's messages name the problem and a type, never a value.
    detail = str(exc)
    if "Recursion limit" in detail:
        detail = f"nested deeper than {MAX_ENCODE_DEPTH} levels"
    return InputError(_cut(f"cannot be encoded as JSON: {detail}"))


def describe_validation_error(exc: ValidationError, what: str) -> str:
    """One line naming the first failing field(s) and why, without any input value."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"]
        if err["type"] == "union_tag_invalid":  # pydantic's message quotes the input tag
            ctx = err.get("ctx", {})
            msg = f"{ctx.get('discriminator', 'tag')} is none of {ctx.get('expected_tags', '?')}"
        parts.append(f"{loc}: {msg}")
    more = exc.error_count() - len(parts)
    suffix = f" (+{more} more)" if more > 0 else ""
    return _cut(f"not a valid {what}: " + "; ".join(parts) + suffix)


def validate(model: type[M], obj: Any, what: str) -> M:
    """Validate a decoded JSON value against ``model``; :class:`InputError` on failure."""
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise InputError(describe_validation_error(exc, what)) from exc


def _cut(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 3] + "..."
