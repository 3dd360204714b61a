"""``codec.loads_trusted`` (state the worker wrote: msgspec, no digit-run check) decodes what
``codec.dumps_canonical`` wrote exactly as ``codec.loads`` does (issue 14)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor import codec
from processor.errors import InputError

_SCALARS = (
    st.text()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 5, max_value=2**64 + 5)
    | st.integers(min_value=-(2**90), max_value=2**90)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.none()
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _typed(value: Any) -> Any:
    """``value`` with the exact type of every part (``-0.0`` apart from ``0.0``)."""
    if isinstance(value, dict):
        return ("dict", [(k, _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(item) for item in value])
    if isinstance(value, float):
        return (float, value.hex(), math.copysign(1.0, value))
    return (type(value), value)


@settings(max_examples=500, deadline=None)
@given(_VALUES)
def test_trusted_loads_reads_canonical_dumps_as_loads_does(value: Any) -> None:
    """Integers of any size, floats, text and nesting come back as ``codec.loads`` gives them."""
    try:
        dumped = codec.dumps_canonical(value)
    except InputError:  # what no state holds (e.g. a lone surrogate)
        return
    assert _typed(codec.loads_trusted(dumped)) == _typed(codec.loads(dumped))


def test_trusted_loads_keeps_big_integers_exact() -> None:
    """An integer beyond 64 bits is decoded digit for digit, not rounded to a float."""
    assert codec.loads_trusted(b'{"a":[123456789012345678901234567890,-1]}') == {
        "a": [123456789012345678901234567890, -1]
    }


def test_trusted_loads_falls_back_on_what_msgspec_refuses() -> None:
    """What msgspec refuses goes through ``codec.loads``, which gives its value-free reason."""
    for text in (b"[1e400]", b'["\\ud800"]'):
        with pytest.raises(InputError, match=r"^invalid JSON: "):
            codec.loads_trusted(text)
