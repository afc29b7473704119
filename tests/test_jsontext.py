"""``hub.jsontext``: orjson's speed without changing what is written or what is accepted."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub import jsontext


def reference(data: object) -> str:
    """What the event log wrote before orjson."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass
class Point:
    x: int


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=st.characters(blacklist_categories=["Cs"])),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(JSONISH)
def test_the_text_is_what_the_standard_library_wrote(data: object) -> None:
    assert jsontext.dumps(data) == reference(data)
    assert jsontext.loads(jsontext.dumps(data)) == data


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_float_may_be_spelt_otherwise_but_reads_back_the_same(value: float) -> None:
    assert jsontext.loads(jsontext.dumps([value])) == json.loads(reference([value])) == [value]


@pytest.mark.parametrize(
    "data",
    [
        {"at": datetime(2026, 12, 7, 10, 0, tzinfo=UTC)},  # str(), not orjson's ISO form
        {"p": Point(1)},  # str(), not a dict
        {"d": Decimal("1.5")},
        {"big": 2**70},  # past orjson's 64 bits
        {1: "non-string key"},
        {"lone": "\ud800"},  # orjson refuses lone surrogates
        {"text": "é ✓ \n\t\u0001"},
    ],
)
def test_what_orjson_writes_otherwise_or_refuses_is_written_as_before(data: object) -> None:
    assert jsontext.dumps(data) == reference(data)


def test_json_columns_still_refuse_what_json_has_no_type_for() -> None:
    with pytest.raises(TypeError):
        jsontext.strict_dumps({"at": datetime(2026, 12, 7, tzinfo=UTC)})
    assert jsontext.strict_dumps({"a": [1, "é"]}) == '{"a":[1,"é"]}'


@pytest.mark.parametrize(
    "text", ['{"n": NaN}', '"\\ud800"', b'{"a": 1}', '{"big": 123456789012345678901234567890}']
)
def test_what_the_standard_library_reads_is_still_read(text: str | bytes) -> None:
    assert repr(jsontext.loads(text)) == repr(json.loads(text))


@pytest.mark.parametrize("text", ["", "{", "[1,]", b"\xff"])
def test_what_is_not_json_still_raises_a_value_error(text: str | bytes) -> None:
    with pytest.raises(ValueError):
        jsontext.loads(text)


def test_what_is_not_text_raises_the_type_error_json_raises() -> None:
    # SQLAlchemy's SQLite JSON type reads a stored scalar that SQLite turned into a number this way.
    for value in (5, 1.5, None):
        with pytest.raises(TypeError):
            jsontext.loads(value)  # type: ignore[arg-type]
