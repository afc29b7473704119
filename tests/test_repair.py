"""``hub.repair``: text no database holds is repaired wherever it sits; the rest is left alone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from hub.models import Attachment, ContactRef, InboundMessage
from hub.repair import repair_events


def message(**fields: object) -> InboundMessage:
    base: dict[str, object] = {
        "external_id": "m1",
        "contact": ContactRef(ids=["wa:1"], name="Ann"),
        "kind": "text",
        "text": "hello",
        "timestamp": datetime(2026, 12, 7, tzinfo=UTC),
    }
    return InboundMessage.model_validate(base | fields)


def test_a_clean_event_is_passed_on_as_it_is() -> None:
    ev = message(data={"k": ["v", 1, None]})
    assert repair_events([ev])[0] is ev


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"text": "a\x00b"}, lambda e: e.text),
        ({"text": "half \ud83d emoji"}, lambda e: e.text),
        ({"contact": ContactRef(ids=["wa:1"], name="A\x00nn")}, lambda e: e.contact.name),
        ({"data": {"nested": [{"deep": "x\udc80"}]}}, lambda e: e.data["nested"][0]["deep"]),
        ({"data": {"key\x00": 1}}, lambda e: next(iter(e.data))),
        (
            {"attachments": [Attachment(kind="image", external_id="i1", caption="c\x00")]},
            lambda e: e.attachments[0].caption,
        ),
    ],
)
def test_nul_and_lone_surrogates_are_replaced_wherever_they_are(
    fields: dict[str, object], where: Callable[[InboundMessage], str]
) -> None:
    ev = message(**fields)
    fixed = repair_events([ev])[0]
    assert fixed is not ev
    text = where(fixed)
    assert "\ufffd" in text
    assert "\x00" not in text
    text.encode("utf-8")  # storable: no lone surrogate is left
