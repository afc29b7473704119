"""``parse``: raw mails written for every case in PROVIDERS.md to normalized events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from email_support import load, parse
from hub_email.html import html_to_text, sanitize_html
from hub_email.quotes import split_quoted

from hub.models import (
    AttachmentKind,
    Direction,
    InboundMessage,
    MessageKind,
    MessageStatus,
    ReactionUpdate,
    StatusUpdate,
)


def one_message(name: str) -> InboundMessage:
    events = parse(load(name))
    assert len(events) == 1
    message = events[0]
    assert isinstance(message, InboundMessage)
    return message


def test_gmail_reply_splits_a_wrapped_attribution() -> None:
    m = one_message("gmail_reply")
    assert m.kind is MessageKind.EMAIL
    assert m.external_id == "<CAGmail-2@mail.gmail.com>"
    assert m.contact.ids == ["email:ann@customer.example"]
    assert m.contact.name == "Ann Lee"
    assert m.subject == "Re: Order 1042 arrived damaged"
    assert m.timestamp == datetime(2026, 3, 3, 9, 15, tzinfo=timezone(timedelta(hours=1)))
    assert m.text == "Thanks, a replacement would be great.\n\nAnn"
    assert m.data["quoted_text"].startswith("On Mon, Mar 2, 2026 at 6:01 PM")
    assert "The vase was broken" in m.data["full_text"]
    assert m.data["full_text"].startswith(m.text)
    # In-Reply-To first, then References newest first.
    assert m.thread_refs == ["<hub-msg_out1@example.com>", "<CAGmail-1@mail.gmail.com>"]
    assert m.reply_to_external_id == "<hub-msg_out1@example.com>"
    assert "<blockquote>Sorry to hear that.</blockquote>" in m.data["html"]


def test_outlook_header_block_is_quoted() -> None:
    m = one_message("outlook_reply")
    assert m.text == "Hi,\n\nThe PO number is 4471.\n\nRegards,\nBob"
    assert m.data["quoted_text"].startswith("________________________________\nFrom: Support")
    assert m.contact.email == "bob.brown@corp.example"  # addresses compare lower-cased


@pytest.mark.parametrize("name", ["apple_mail", "apple_mail_plain_attribution"])
def test_apple_mail_quotes(name: str) -> None:
    m = one_message(name)
    assert m.text in ("Yes, Friday works for me.", "See you then.")
    assert "Would Friday at 10:00 suit you?" in m.data["quoted_text"]
    assert "Would Friday" not in (m.text or "")


@pytest.mark.parametrize(
    ("text", "new"),
    [
        ("Sure.\n\n> old line\n> older line\n", "Sure."),
        (
            "Ok!\n\nLe lun. 2 mars 2026 à 18:01, Support <support@example.com> a\nécrit :\n> avant",
            "Ok!",
        ),
        ("Danke\n\nAm 02.03.2026 um 18:01 schrieb Support <s@example.com>:\n> alt", "Danke"),
        ("Yes\n\n-----Original Message-----\nFrom: a\nSent: b\n\nold", "Yes"),
        # A reply interleaved with quotes keeps everything: the quote is not the tail.
        (
            "> Which size?\nLarge.\n> Which colour?\nBlue.\nThanks",
            "> Which size?\nLarge.\n> Which colour?\nBlue.\nThanks",
        ),
        # Only quoted (a bare forward): the agent still sees the text.
        ("> forwarded line\n> another", "> forwarded line\n> another"),
        ("On my way home I wondered: is it shipped?", "On my way home I wondered: is it shipped?"),
    ],
)
def test_split_quoted_styles(text: str, new: str) -> None:
    assert split_quoted(text)[0] == new


def test_html_only_mail_is_rendered_and_sanitised() -> None:
    m = one_message("html_only")
    assert (
        m.text
        == "Hello,\n\nI cannot log in since yesterday.\n\nclick or FAQ\n\n- Browser: Firefox\n- OS: Linux"
    )
    html = m.data["html"]
    for bad in ("<script", "alert(", "onclick", "javascript:", "<iframe", "onerror", "<style", "color: red"):
        assert bad not in html, bad
    assert '<a href="https://help.example/faq"' in html
    assert "<b>yesterday</b>" in html


def test_html_blockquote_is_quoted_text() -> None:
    text = html_to_text(
        "<div>Fine by me.</div><div class=gmail_quote>On Mon, Support wrote:<blockquote>Old text"
        "<br>more old</blockquote></div>"
    )
    new, quoted = split_quoted(text)
    assert new == "Fine by me."
    assert "Old text" in quoted


def test_sanitize_keeps_cid_images_and_escapes_text() -> None:
    out = sanitize_html('<p>1 &lt; 2 <img src="cid:a@b" alt="x"><img src="data:text/html,evil"></p>')
    assert out == '<p>1 &lt; 2 <img src="cid:a@b" alt="x"><img></p>'


def test_adjacent_encoded_words_and_qp_split_multibyte() -> None:
    m = one_message("encoded_words_qp")
    assert m.subject == "Café crème brûlée naïve"
    assert m.contact.name == "José Müller"
    assert m.text == "Je voudrais un café crème, s\u2019il vous plaît. \U0001f600"


def test_windows_1252_labelled_latin1() -> None:
    assert (
        one_message("cp1252_labelled_latin1").text == "\u201cIs it \u20ac20?\u201d she asked \u2013 naïvely."
    )


def test_raw_8bit_header_and_unlabelled_utf8_body() -> None:
    m = one_message("eightbit_header")
    assert m.subject == "Réservation — 8-bit header"
    assert m.text == "No charset label, but UTF-8: été."


def test_attachments_inline_images_rfc2231_and_no_duplicates() -> None:
    m = one_message("attachments")
    assert m.text == "See the photo below and the report attached."
    assert [(a.kind, a.filename, a.mime_type) for a in m.attachments] == [
        (AttachmentKind.IMAGE, "photo.png", "image/png"),
        (AttachmentKind.FILE, "Rapport naïf.pdf", "application/pdf"),
    ]
    photo, pdf = m.attachments
    assert photo.content_id == "photo1@customer.example"
    assert photo.size == 70 and pdf.size == 54
    assert photo.sha256 and len(photo.sha256) == 64
    # Each has an id the channel can fetch the bytes with again (Message-ID and part index).
    assert photo.external_id == "<attach-1@customer.example>#2"
    assert pdf.external_id == "<attach-1@customer.example>#3"
    assert 'src="cid:photo1@customer.example"' in m.data["html"]


def test_mail_without_message_id_gets_a_stable_id() -> None:
    body = load("no_message_id")
    first = one_message("no_message_id")
    assert first.external_id.startswith("<no-message-id.")
    again = parse(bytes(body))[0]
    assert isinstance(again, InboundMessage)
    assert again.external_id == first.external_id
    other = parse(body.replace(b"Sunday", b"Monday"))[0]
    assert isinstance(other, InboundMessage)
    assert other.external_id != first.external_id


def test_web_form_relay_customer_is_reply_to() -> None:
    m = one_message("webform_relay")
    assert m.contact.ids == ["email:ivan@customer.example"]
    assert m.contact.name == "Ivan Petrov"
    assert m.data["via"]["address"] == "noreply@forms.example.com"


def test_cc_recipients_kept_without_our_own_address() -> None:
    m = one_message("cc")
    assert [c["address"] for c in m.data["cc"]] == ["kim@customer.example", "lee@partner.example"]
    assert [c.email for c in m.cc] == ["kim@customer.example", "lee@partner.example"]


def test_our_own_mail_is_outbound() -> None:
    m = one_message("own_sent")
    assert m.direction is Direction.OUTBOUND
    assert m.contact.ids == ["email:mo@customer.example"]


def test_auto_reply_to_our_mail_is_a_delivery_receipt() -> None:
    events = parse(load("autoreply_rfc3834"))
    assert len(events) == 1
    status = events[0]
    assert isinstance(status, StatusUpdate)
    assert status.external_id == "<hub-msg_out3@example.com>"
    assert status.status is MessageStatus.DELIVERED
    assert status.data["auto_reply"] == "Auto-Submitted: auto-replied"


@pytest.mark.parametrize("name", ["autoreply_x_autoreply", "precedence_bulk"])
def test_other_automatic_mail_is_no_message(name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    assert parse(load(name)) == []
    assert "automatic reply" in caplog.text


def test_auto_submitted_no_is_a_person() -> None:
    assert one_message("auto_submitted_no").text == "Is this a real message? Yes."


def test_bounce_fails_the_original_with_the_reason() -> None:
    events = parse(load("bounce_dsn"))
    assert len(events) == 1
    status = events[0]
    assert isinstance(status, StatusUpdate)
    assert status.external_id == "<hub-msg_out5@example.com>"
    assert status.status is MessageStatus.FAILED
    assert status.error is not None
    assert status.error["class"] == "recipient"
    assert status.error["provider_code"] == "5.1.1"
    assert "User unknown" in status.error["message"]
    assert status.timestamp == datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def test_delayed_dsn_records_nothing() -> None:
    assert parse(load("bounce_delayed")) == []


def test_bounce_of_mail_the_hub_did_not_send_is_ignored() -> None:
    body = load("bounce_dsn").replace(b"<hub-msg_out5@example.com>", b"<sent-by-someone@elsewhere.example>")
    assert parse(body) == []


def test_no_date_falls_back_to_received_time() -> None:
    body = load("no_message_id").replace(b"Date: Tue, 10 Mar 2026 07:00:00 +0000\n", b"")
    m = parse(body)[0]
    assert isinstance(m, InboundMessage)
    assert m.timestamp == datetime(2026, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "target", "emoji"),
    [
        # Gmail's documented shape: a text/vnd.google.email-reaction+json part beside fallbacks.
        ("reaction_gmail", "<hub-msg_out7@example.com>", "\U0001f44d"),
        # RFC 9078: a text/plain part with Content-Disposition: reaction.
        ("reaction_rfc9078", "<hub-msg_out8@example.com>", "\U0001f600"),
    ],
)
def test_a_reaction_is_a_reaction_on_the_mail_it_answers_not_a_message(
    name: str, target: str, emoji: str
) -> None:
    [event] = parse(load(name))
    assert isinstance(event, ReactionUpdate), event
    assert (event.target_external_id, event.emoji) == (target, emoji)
    assert event.contact.email is not None and event.contact.email.endswith("@customer.example")


def test_a_reaction_part_without_a_mail_to_react_to_is_an_ordinary_mail() -> None:
    body = load("reaction_rfc9078").replace(b"In-Reply-To: <hub-msg_out8@example.com>\r\n", b"")
    assert isinstance(one_message_of(body), InboundMessage)


def one_message_of(body: bytes) -> InboundMessage:
    [message] = parse(body)
    assert isinstance(message, InboundMessage)
    return message
