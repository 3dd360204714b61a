"""Dead-letter records: the input unchanged with headers, or without a value too big to copy."""

from __future__ import annotations

from processor.transport import InRecord
from processor.worker.outputs import dead_letter


def _record(value: bytes) -> InRecord:
    return InRecord("in", 2, 41, b"k", value, (), 0)


def test_the_copy_keeps_key_value_and_says_where_it_came_from() -> None:
    """Key and value unchanged; headers name the error, topic, partition and offset."""
    out = dead_letter("dlq", _record(b"{bad"), "not JSON", max_value_bytes=1000)
    assert (out.topic, out.key, out.value) == ("dlq", b"k", b"{bad")
    assert dict(out.headers) == {
        "ncd_error": b"not JSON",
        "ncd_original_topic": b"in",
        "ncd_original_partition": b"2",
        "ncd_original_offset": b"41",
    }


def test_a_value_over_the_limit_is_left_out_and_its_size_said() -> None:
    """The producer could not write it: the pointer headers lead to the original."""
    out = dead_letter("dlq", _record(b"x" * 5000), "too big", max_value_bytes=1000)
    assert out.value is None
    assert dict(out.headers)["ncd_value_omitted"] == b"5000"
    assert dict(out.headers)["ncd_original_offset"] == b"41"
