"""Search as an actor may: messages of the conversations they may read, contacts of the channels
they serve (with ``contacts.read``). The engine (``hub.search``) finds; the scope decides what is
shown, in the query itself, so a page is never short of what the actor may see."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hub import schema
from hub.access import Actor
from hub.events import Store
from hub.records import message_dict
from hub.search import contact_match, message_match, terms

__all__ = ["SearchService"]

M = schema.messages
C = schema.conversations
K = schema.contacts
ID = schema.contact_identities


class SearchService:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def search(self, actor: Actor, query: str, *, limit: int) -> dict[str, list[dict[str, Any]]]:
        """The newest messages and contacts holding every word of ``query`` (the last one as a
        prefix) that the actor may see: ``{"messages": [...], "contacts": [...]}``."""
        words = terms(query)
        if not words:
            return {"messages": [], "contacts": []}
        dialect = self.store.db.dialect
        messages = (
            sa.select(M)
            .join(C, C.c.id == M.c.conversation_id)
            .where(actor.conversation_clause(), message_match(dialect, words))
            .order_by(M.c.created_at.desc(), M.c.id.desc())
            .limit(limit)
        )
        async with self.store.db.read() as conn:
            found = [message_dict(r) for r in (await conn.execute(messages)).mappings()]
            contacts: list[dict[str, Any]] = []
            if actor.can("contacts.read"):
                stmt = (
                    sa.select(K)
                    .where(contact_match(dialect, words))
                    .order_by(K.c.updated_at.desc(), K.c.id)
                    .limit(limit)
                )
                if not actor.all_channels:
                    stmt = stmt.where(K.c.channel_id.in_(sorted(actor.channel_ids)))
                rows = (await conn.execute(stmt)).mappings().all()
                ids: dict[str, list[str]] = {}
                if rows:
                    for identity, contact_id in await conn.execute(
                        sa.select(ID.c.identity, ID.c.contact_id)
                        .where(ID.c.contact_id.in_([r["id"] for r in rows]))
                        .order_by(ID.c.identity)
                    ):
                        ids.setdefault(contact_id, []).append(identity)
                contacts = [
                    {
                        "id": r["id"],
                        "channel_id": r["channel_id"],
                        "name": r["name"],
                        "phone": r["phone"],
                        "email": r["email"],
                        "identities": ids.get(r["id"], []),
                    }
                    for r in rows
                ]
        return {"messages": found, "contacts": contacts}
