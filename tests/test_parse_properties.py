"""``parse`` of every installed channel type, under hypothesis: whatever the bytes, it returns
normalized events or raises ``BadPayload``, never anything else (the webhook handler would store the
delivery and fail it in processing, again on every replay).

Generic over the registry: a channel plugin that is installed (Messenger, email, a third party's)
is tested here with no change to this file. Bodies are arbitrary bytes, arbitrary JSON, and every
plugin's JSON fixtures with leaves replaced by hostile values.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, TypeAdapter

from hub.channel import Channel, RawEvent
from hub.errors import BadPayload
from hub.models import ParsedEvent
from hub.plugins import load_plugins
from hub.testing.pytest_plugin import RecordingContext

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = sorted(ROOT.glob("plugins/*/tests/fixtures/**/*.json"))
_, REGISTRY, _ = load_plugins()
TYPES = sorted(REGISTRY.types())
EVENTS = TypeAdapter(list[ParsedEvent])

# Values that broke parsers elsewhere: wrong types, empty and huge strings, lone surrogates, NUL,
# numbers out of any range, non-finite floats (json.loads takes NaN), deep nesting.
hostile_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", " ", "\ud83d", "a\x00b", "9" * 40, "-1", "1e400", "x" * 5000]),
)
json_values = st.recursive(
    hostile_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=25,
)


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))] or [path]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(v, (*path, i))] or [path]
    return [path]


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replace(value[path[0]], path[1:], new)
    return copy


@st.composite
def mutated_fixture(draw: st.DrawFn) -> bytes:
    doc = json.loads(draw(st.sampled_from(FIXTURES)).read_text(encoding="utf-8"))
    for _ in range(draw(st.integers(1, 4))):
        paths = _leaves(doc)
        path = draw(st.sampled_from(paths))
        # Cut the path short sometimes: a whole object or list replaced, not only a leaf.
        path = path[: draw(st.integers(0, len(path)))] if path else path
        doc = _replace(doc, path, draw(json_values))
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
    mutated_fixture() if FIXTURES else st.nothing(),
)


def _stand_in(annotation: Any) -> Any:
    """A value for a required settings field, by its type: parse must not need real credentials."""
    options = get_args(annotation) or (annotation,)
    for option in options:
        if option is SecretStr:
            return SecretStr("planted-secret-1234")
        if option is str:
            return "1234567890"
        if option in (int, float):
            return 1
    return None


def make_channel(cls: type[Channel]) -> Channel:
    required = {
        name: _stand_in(field.annotation)
        for name, field in cls.Settings.model_fields.items()
        if field.is_required()
    }
    channel_settings = cls.Settings.model_construct(**required)
    context = RecordingContext(http=httpx.AsyncClient(), log=logging.getLogger("hub.test.parse"))
    return cls(f"{cls.type_name}-prop", channel_settings, context)


def check_events(events: Any) -> None:
    """What parse returned is normalized events that serialize to standard JSON."""
    parsed = EVENTS.validate_python(events)
    for event in parsed:
        # As the hub writes free-form fields to the event log: a NaN there is unreadable to apps.
        json.dumps(event.model_dump(), allow_nan=False, default=str)


@pytest.mark.parametrize("type_name", TYPES)
def test_parse_returns_events_or_bad_payload(type_name: str) -> None:
    channel = make_channel(REGISTRY.types()[type_name])

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=bodies, content_type=st.sampled_from(["application/json", "message/rfc822", ""]))
    def parse_any(body: bytes, content_type: str) -> None:
        raw = RawEvent(channel.channel_id, body, {"content-type": content_type})
        try:
            events = channel.parse(raw)
        except BadPayload:
            return
        check_events(events)

    parse_any()


def test_the_properties_cover_the_built_in_channels() -> None:
    assert {"whatsapp"} <= set(TYPES), TYPES
    assert FIXTURES, "no plugin fixtures found to mutate"
