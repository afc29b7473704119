"""A file the hub stored from an agent's upload, read for a Graph API upload."""

from __future__ import annotations

import asyncio
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from hub.errors import SendError, SendErrorClass
from hub.models import OutboundAttachment

__all__ = ["StoredFile", "read_stored"]


@dataclass(frozen=True)
class StoredFile:
    data: bytes
    filename: str
    mime_type: str


async def read_stored(att: OutboundAttachment, label: str) -> StoredFile:
    """The bytes (read off the event loop), filename and MIME type of ``att.path``.

    An unreadable file is a ``permanent`` ``SendError`` naming ``label`` (``"image"``, ...).
    """
    path = Path(att.path or "")
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        raise SendError(
            SendErrorClass.PERMANENT,
            f"the stored file for this {label} cannot be read: {type(exc).__name__}",
        ) from None
    filename = att.filename or path.name
    mime = att.mime_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return StoredFile(data, filename, mime)
