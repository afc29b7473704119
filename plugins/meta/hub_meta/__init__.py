"""What Meta's channels (WhatsApp Cloud API, Messenger, Instagram Direct) have in common.

A library the Meta channel plugins depend on, built on the hub's public plugin API only:

* ``hub_meta.webhook``: the ``hub.mode=subscribe`` handshake and the ``X-Hub-Signature-256`` check;
* ``hub_meta.errors``: Graph API error bodies to classified ``SendError`` s, through a code table
  each channel supplies;
* ``hub_meta.graph``: ``GraphClient``, one request helper that turns every failure into a
  classified ``SendError`` with no secret in it, and ``health_of`` for health probes;
* ``hub_meta.payload``: reading webhook JSON defensively; ``hub_meta.settings``: the Graph API
  base URL; ``hub_meta.upload``: reading a hub-stored file for an upload.

It registers no channel: it is not in the ``hub`` entry-point group.
"""

from hub_meta.errors import CodeTable, classify_code, error_from_response, redact, retry_after_seconds
from hub_meta.graph import GraphClient, health_of
from hub_meta.webhook import SIGNATURE_HEADER, check_signature, verify_handshake

__all__ = [
    "SIGNATURE_HEADER",
    "CodeTable",
    "GraphClient",
    "check_signature",
    "classify_code",
    "error_from_response",
    "health_of",
    "redact",
    "retry_after_seconds",
    "verify_handshake",
]

__version__ = "0.1.0"
