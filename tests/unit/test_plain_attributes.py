"""The attribute shortcut of :class:`~processor.models.Account` (issue 14) against the full
validation: attributes as JSON decoding gives them are taken as they are, and the model
accepts, returns and rejects (with the same reasons) exactly what it did without it."""

from __future__ import annotations

import math
from enum import IntEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError, create_model

from processor import codec
from processor.models import Account, AttributeValue
from processor.models.common import InputModel, plain_attributes

_UNION = TypeAdapter(dict[str, AttributeValue])


class _Text(str):
    """A str subclass: the strict union does not take it as it is."""


class _Number(IntEnum):
    ONE = 1


#: Account as it was, without the shortcut: the same fields, the same types.
_REFERENCE: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "Account",
    __base__=InputModel,
    **{name: (info.annotation, info) for name, info in Account.model_fields.items()},
)

_SCALARS = (
    st.text()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**64, max_value=2**80)
    | st.floats()
    | st.none()
)
_ODD = (
    st.builds(_Text, st.text())
    | st.just(_Number.ONE)
    | st.binary(max_size=3)
    | st.tuples(st.integers())
    | st.sets(st.integers(), max_size=2)
)
_VALUES = st.recursive(
    _SCALARS | _ODD,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=12,
)
_KEYS = st.text() | st.integers() | st.builds(_Text, st.text())
_ATTRIBUTES = st.dictionaries(_KEYS, _VALUES, max_size=6) | _VALUES


def _typed(value: Any) -> Any:
    """``value`` with the exact type of every part (and NaN comparable)."""
    if isinstance(value, dict):
        return ("dict", [(_typed(k), _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(item) for item in value])
    if isinstance(value, float) and math.isnan(value):
        return (float, "nan")
    return (type(value), value)


def _outcome(model: type[BaseModel], attributes: Any) -> tuple[str, Any]:
    """What validating an account with ``attributes`` gives: its attributes, or the reason."""
    try:
        account = model.model_validate({"nativeIdentity": "n", "attributes": attributes})
    except ValidationError as exc:
        return "rejected", codec.describe_validation_error(exc, "account")
    return "accepted", _typed(account.attributes)  # type: ignore[attr-defined]


@settings(max_examples=400, deadline=None)
@given(_ATTRIBUTES)
def test_plain_attributes_are_what_the_union_returns_unchanged(attributes: Any) -> None:
    """Attributes the shortcut calls plain are valid, and the union returns them unchanged."""
    if not plain_attributes(attributes):
        return
    assert _typed(_UNION.validate_python(attributes)) == _typed(attributes)


@settings(max_examples=400, deadline=None)
@given(_ATTRIBUTES)
def test_account_validation_is_unchanged_by_the_shortcut(attributes: Any) -> None:
    """Account accepts, returns and rejects (same reason text) as it did without the
    shortcut."""
    assert _outcome(Account, attributes) == _outcome(_REFERENCE, attributes)


@pytest.mark.parametrize(
    ("attributes", "plain"),
    [
        ({"a": "x", "b": [1, None, True, 1.5, "y"], "c": 10**30}, True),
        ({"a": [[1]]}, False),
        ({"a": {"b": 1}}, False),
        ({"a": _Text("x")}, False),
        ({"a": [_Number.ONE]}, False),
        ({1: "x"}, False),
        ([("a", "x")], False),
    ],
)
def test_plain_attributes_cases(attributes: Any, plain: bool) -> None:
    """JSON scalars and flat lists of them are plain; nesting, subclasses, non-str keys and
    non-dicts are not."""
    assert plain_attributes(attributes) is plain


def test_plain_attributes_are_copied() -> None:
    """The account holds its own attribute map, not the input's."""
    given = {"a": "x"}
    account = Account.model_validate({"nativeIdentity": "n", "attributes": given})
    assert account.attributes == given
    assert account.attributes is not given
