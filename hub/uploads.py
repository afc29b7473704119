"""Agents' uploads: files streamed to disk as they arrive, typed by their content, never by the
client's word alone.

A file is written chunk by chunk in a worker thread (a 100 MiB video never sits in memory, and the
event loop never waits on the disk), stopped with ``UploadTooLarge`` past the limit, and described
by a small JSON file beside it: size, the MIME type sniffed from its first bytes (``filetype``),
the name the client gave. The description keeps the file's path for the hub's own use; no answer
of the API carries it.

When sending, ``kind_mismatch`` holds an attachment's declared kind against what the file is: a
JPEG is no video.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

import filetype

from hub.db import new_id
from hub.models import AttachmentKind

__all__ = ["EmptyUpload", "UploadStore", "UploadTooLarge", "kind_mismatch", "kind_of", "sniff"]

# filetype reads at most this many bytes of a file's head (its own constant is 8192).
SNIFF_BYTES = 8192
# A media type as RFC 6838 spells it, without parameters: anything else is not trusted to a header.
_MIME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$")
# Containers that carry sound as often as pictures (an .m4a is an MP4, a voice note an Ogg).
_AUDIO_CONTAINERS = frozenset({"video/mp4", "video/3gpp", "video/webm", "video/ogg", "application/ogg"})
_MEDIA_TOPS = ("image/", "audio/", "video/")


class EmptyUpload(Exception):
    def __init__(self) -> None:
        super().__init__("the upload is empty")


class UploadTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the file is larger than the hub accepts ({limit} bytes)")
        self.limit = limit


def sniff(head: bytes, declared: str | None) -> str:
    """The MIME type of a file from its first bytes. Formats without a signature (text, CSV, SVG)
    keep the declared type, unless it claims a picture, sound or video that the bytes do not show:
    then the file is ``application/octet-stream``."""
    found = filetype.guess_mime(head) if head else None
    if found:
        return str(found)
    clean = (declared or "").split(";", 1)[0].strip().lower()
    if not _MIME.match(clean) or clean.startswith(_MEDIA_TOPS):
        return "application/octet-stream"
    return clean


def kind_of(mime_type: str) -> AttachmentKind:
    """The attachment kind a file of this type is sent as, by default."""
    top = mime_type.split("/", 1)[0]
    if top in ("image", "audio", "video"):
        return AttachmentKind(top)
    return AttachmentKind.FILE


def kind_mismatch(kind: AttachmentKind, mime_type: str) -> str | None:
    """Why a file of ``mime_type`` cannot be sent as ``kind``; None when it can."""
    if kind is AttachmentKind.FILE:
        return None
    if kind is AttachmentKind.IMAGE:
        ok = mime_type.startswith("image/")
    elif kind is AttachmentKind.STICKER:
        ok = mime_type in ("image/webp", "image/png", "image/gif")
    elif kind is AttachmentKind.VIDEO:
        ok = mime_type.startswith("video/")
    else:  # audio
        ok = mime_type.startswith("audio/") or mime_type in _AUDIO_CONTAINERS
    if ok:
        return None
    return f"the file is {mime_type}: it cannot be sent as {kind.value}"


def _safe_name(name: str | None) -> str:
    """A file name without directories, control characters or surprises; "file" when none is left."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable() and ch not in '"')
    return base.strip()[:255] or "file"


def _write(fh: IO[bytes], data: bytes) -> None:
    fh.write(data)


def _finish(fh: IO[bytes], part: Path, final: Path, meta_path: Path, meta: dict[str, Any]) -> None:
    fh.close()
    os.replace(part, final)
    meta_path.write_text(json.dumps(meta))


def _discard(fh: IO[bytes], part: Path) -> None:
    fh.close()
    part.unlink(missing_ok=True)


class UploadStore:
    """The folder of agents' uploads, and the largest file it takes."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes

    async def receive(
        self, chunks: AsyncIterator[bytes], declared_type: str | None, filename: str | None
    ) -> dict[str, Any]:
        """Store a file from its chunks; its public description (``upload_id``, ``size``,
        ``mime_type``, ``filename``, ``kind``). ``UploadTooLarge`` past ``max_bytes`` and
        ``EmptyUpload`` for no bytes at all (nothing is kept of either)."""
        uid = new_id("up_")
        final = self.folder / uid
        part = self.folder / f"{uid}.part"
        await asyncio.to_thread(self.folder.mkdir, parents=True, exist_ok=True)
        fh = await asyncio.to_thread(open, part, "wb")
        size = 0
        head = b""
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if size > self.max_bytes:
                    raise UploadTooLarge(self.max_bytes)
                if len(head) < SNIFF_BYTES:
                    head += chunk[: SNIFF_BYTES - len(head)]
                await asyncio.to_thread(_write, fh, chunk)
            if size == 0:
                raise EmptyUpload
            mime = sniff(head, declared_type)
            public = {
                "upload_id": uid,
                "size": size,
                "mime_type": mime,
                "filename": _safe_name(filename),
                "kind": kind_of(mime).value,
            }
            meta = {**public, "path": str(final.resolve())}
            await asyncio.to_thread(_finish, fh, part, final, self.folder / f"{uid}.json", meta)
            return public
        except BaseException:
            with contextlib.suppress(OSError):
                await asyncio.shield(asyncio.to_thread(_discard, fh, part))
            raise

    async def discard(self, upload_id: str) -> None:
        """Forget an upload just received (its request turned out to be invalid)."""

        def remove() -> None:
            (self.folder / upload_id).unlink(missing_ok=True)
            (self.folder / f"{upload_id}.json").unlink(missing_ok=True)

        await asyncio.to_thread(remove)

    async def load(self, upload_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The stored descriptions of these uploads (path included), by id; unknown ids are absent."""
        return await asyncio.to_thread(self._read, upload_ids)

    def _read(self, upload_ids: list[str]) -> dict[str, dict[str, Any]]:
        out = {}
        for uid in upload_ids:
            if uid and uid.replace("_", "").isalnum():
                meta = self.folder / f"{uid}.json"
                if meta.exists():
                    out[uid] = json.loads(meta.read_text())
        return out
