"""The outbound pipeline: an author's draft becomes a queued message plus an outbox job (one
transaction), and outbox workers deliver them.

- ``draft``: what an author asks to send; ``capabilities``: what a channel type cannot carry;
- ``enqueue``: storing the message and its job; ``actions``: retry, cancel, a channel's queue;
- ``worker``: claim, lease and delivery; ``send``: one attempt's provider call;
- ``policy``: what each ``SendErrorClass`` leads to, and the backoff (pure functions);
- ``record``: what became of each job; ``load``: what the worker reads to build an
  ``OutboundMessage``; ``refused``: why a request is refused.
"""

from hub.outbound.actions import cancel_channel_queue, cancel_message, retry_message
from hub.outbound.capabilities import check_capabilities
from hub.outbound.draft import Draft
from hub.outbound.enqueue import TxSendWriter, enqueue, write_sends
from hub.outbound.refused import SendRefused
from hub.outbound.worker import OutboxWorker

__all__ = [
    "Draft",
    "OutboxWorker",
    "SendRefused",
    "TxSendWriter",
    "cancel_channel_queue",
    "cancel_message",
    "check_capabilities",
    "enqueue",
    "retry_message",
    "write_sends",
]
