"""The built-in bot's keyword and menu flows: pure functions from a customer's message to replies.

A flow offers a menu (``options``, known by their number: 1, 2, ...) and answers keywords. On a
channel that carries interactive messages (its capability manifest: WhatsApp) the menu is reply
buttons, or a list when there are more options than buttons; elsewhere it is numbered text and
the customer answers with the number (or the option's title). An option or keyword may hand the
conversation over to a person; so does a customer whose answers match nothing ``max_fallbacks``
times in a row.

``respond`` does no I/O: the delivery worker (``hub.bots.delivery``) sends what it returns, as the
bot, and keeps ``Step.state`` for the next message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StringConstraints

from hub.channel import Capabilities
from hub.outbound import Draft
from hub.outbound.draft import ChoiceIn, InteractiveIn

__all__ = ["Flow", "Keyword", "MenuOption", "Step", "json_int", "menu", "respond"]


def _json_int(value: Any) -> Any:
    """A JSON integer: 3 or 3.0 (the same number in JSON), never "3", true or 3.5."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be an integer")
        return int(value)
    return value


def json_int(minimum: int, maximum: int) -> Any:
    """An integer in [minimum, maximum] as JSON has it (see ``_json_int``): what the API
    document's ``integer`` allows."""
    return Annotated[int, Field(ge=minimum, le=maximum), BeforeValidator(_json_int)]


Fallbacks = json_int(0, 10)

Reply = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Word = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class MenuOption(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, StringConstraints(min_length=1, max_length=20)] = Field(
        description="the button or row text (WhatsApp shows at most 20 characters)"
    )
    reply: Reply | None = Field(default=None, description="sent when the customer picks it")
    handoff: StrictBool = Field(default=False, description="hand the conversation to a person after replying")


class Keyword(BaseModel):
    model_config = ConfigDict(extra="forbid")

    words: list[Word] = Field(min_length=1, max_length=20, description="matched as whole words, any case")
    reply: Reply | None = None
    handoff: StrictBool = False


class Flow(BaseModel):
    """A built-in bot's flow."""

    model_config = ConfigDict(extra="forbid")

    greeting: Annotated[str, StringConstraints(min_length=1, max_length=1024)] = Field(
        description="the menu's text, sent on the customer's first message"
    )
    menu_button: Annotated[str, StringConstraints(min_length=1, max_length=20)] = Field(
        default="Options", description="the label that opens a list menu"
    )
    options: list[MenuOption] = Field(min_length=1, max_length=10)
    keywords: list[Keyword] = Field(default_factory=list, max_length=50)
    fallback: Reply = "Sorry, I did not understand that. Please pick one of the options."
    max_fallbacks: Fallbacks = Field(  # type: ignore[valid-type]
        default=2, description="unmatched answers in a row before a person takes over"
    )


@dataclass
class Step:
    """What the bot does for one message: send ``drafts`` in order, then hand over when
    ``handoff`` (the reason) is set; ``state`` is kept for the next message."""

    drafts: list[Draft] = field(default_factory=list)
    handoff: str | None = None
    state: dict[str, Any] = field(default_factory=dict)


def menu(flow: Flow, caps: Capabilities) -> Draft:
    """The menu as this channel can carry it: buttons, a list, or numbered text."""
    choices = [ChoiceIn(id=str(i), title=o.title) for i, o in enumerate(flow.options, 1)]
    if caps.interactive and len(choices) <= caps.max_interactive_buttons:
        return Draft(interactive=InteractiveIn(body=flow.greeting, choices=choices))
    if caps.interactive and len(choices) <= caps.max_interactive_rows:
        return Draft(interactive=InteractiveIn(body=flow.greeting, button=flow.menu_button, choices=choices))
    lines = [flow.greeting, ""]
    lines += [f"{i}. {o.title}" for i, o in enumerate(flow.options, 1)]
    lines += ["", "Reply with the number of your choice."]
    return Draft(text="\n".join(lines))


def _picked(flow: Flow, message: dict[str, Any], text: str) -> MenuOption | None:
    # A button or row's id is the option's number, the same the numbered text shows.
    chosen = str((message.get("interactive") or {}).get("id") or "")
    answer = chosen or text.strip().rstrip(".)").strip()
    if answer.isdigit() and 1 <= int(answer) <= len(flow.options):
        return flow.options[int(answer) - 1]
    folded = answer.casefold()
    return next((o for o in flow.options if folded and o.title.casefold() == folded), None)


def _keyword(flow: Flow, text: str) -> Keyword | None:
    folded = text.casefold()
    for keyword in flow.keywords:
        for word in keyword.words:
            if re.search(rf"(?<!\w){re.escape(word.casefold())}(?!\w)", folded):
                return keyword
    return None


def respond(flow: Flow, state: dict[str, Any], message: dict[str, Any], caps: Capabilities) -> Step:
    """The bot's answer to one inbound ``message`` (as the app sees it), given its ``state``."""
    text = message.get("text") or ""
    state = dict(state)
    menu_sent = bool(state.get("menu_sent"))
    option = _picked(flow, message, text) if menu_sent or message.get("interactive") else None
    if option is not None:
        state["misses"] = 0
        drafts = [Draft(text=option.reply)] if option.reply else []
        reason = f"the customer chose {option.title!r}" if option.handoff else None
        return Step(drafts, reason, state)
    keyword = _keyword(flow, text)
    if keyword is not None:
        state["misses"] = 0
        drafts = [Draft(text=keyword.reply)] if keyword.reply else []
        reason = "the customer asked for a person" if keyword.handoff else None
        return Step(drafts, reason, state)
    if not menu_sent:
        state.update(menu_sent=True, misses=0)
        return Step([menu(flow, caps)], None, state)
    misses = int(state.get("misses") or 0) + 1
    state["misses"] = misses
    if misses > flow.max_fallbacks:
        return Step([], f"the customer's answers matched no option {misses} times in a row", state)
    return Step([Draft(text=flow.fallback), menu(flow, caps)], None, state)
