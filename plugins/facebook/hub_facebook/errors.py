"""Messenger Platform error codes to the hub's ``SendErrorClass`` (Messenger and Instagram).

Meta's Send API reference lists the codes; many arrive as code 10 or 100 with a precise subcode,
and ``hub_meta.CodeTable`` looks subcodes up first.
"""

from __future__ import annotations

from hub_meta import CodeTable

from hub.errors import SendErrorClass

__all__ = ["CODE_TABLE"]

C = SendErrorClass

CODE_TABLE = CodeTable(
    {
        # Outside the messaging window (code 10, subcode 2018278 on Messenger, 2534022 on
        # Instagram): the customer has to write first. The app shows it as the window class.
        10: (C.NEEDS_TEMPLATE, "channel"),
        2018278: (C.NEEDS_TEMPLATE, "channel"),
        2534022: (C.NEEDS_TEMPLATE, "channel"),
        # The person is not available (blocked the Page, deactivated, not reachable).
        551: (C.RECIPIENT, "channel"),
        1545041: (C.RECIPIENT, "channel"),
        2018001: (C.RECIPIENT, "channel"),  # no matching user found
        # Rate limits: the Page's send rate (613), app and user call limits (4, 17, 32).
        613: (C.RATE_LIMITED, "channel"),
        4: (C.RATE_LIMITED, "channel"),
        17: (C.RATE_LIMITED, "channel"),
        32: (C.RATE_LIMITED, "channel"),
        # The Page token expired or was revoked, or the app lost its permission.
        190: (C.AUTH, "channel"),
        102: (C.AUTH, "channel"),
        200: (C.AUTH, "channel"),
        368: (C.AUTH, "channel"),  # blocked for a policy violation: an admin must act
        # Transient on Meta's side: bounded retry.
        1: (C.RETRYABLE, "channel"),
        2: (C.RETRYABLE, "channel"),
        1200: (C.RETRYABLE, "channel"),  # temporary send message failure
        # The request itself is wrong: retrying cannot help.
        100: (C.PERMANENT, "channel"),
    }
)
