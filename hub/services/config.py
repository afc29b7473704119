"""The workspace configuration the app caches, published through one registry.

Each resource (labels, teams, custom attribute definitions, availability statuses, the user's own
permissions, and whatever later features register: quick replies, macros, notification
preferences, ...) is a name and a loader. The registry reads it for an actor and gives it an ETag
(a digest of the exact JSON body, so two reads of the same state, by any process, agree), builds
the ``GET /api/v1/config`` bundle from every resource, and announces a change as
``config.updated`` ``{"resource", "etag", "by"}`` in the transaction that made it.

A resource whose value is the same for every reader (``per_user=False``) is announced with its new
ETag, so an app holding that ETag knows at once whether to refetch. A resource that differs per
reader (the channels in one's scope, one's own permissions or preferences) is announced with
``etag: null`` (and ``user_id`` when it concerns one user only): the app revalidates with
``If-None-Match`` and gets a 304 if its view did not change.

Registering a resource is a few lines::

    registry.register("quick_replies", load_quick_replies)          # async (conn, actor) -> body
    ...
    async with store.tx() as tx:
        ...  # the change
        await registry.changed(tx, "quick_replies", by=actor.ref)

and its own route answers with ``config_response(request, "quick_replies")`` (``hub.web.config``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from hub.access import Actor, system_actor
from hub.events import Store, Tx, dump
from hub.services.errors import NotFound

__all__ = [
    "ConfigRegistry",
    "ConfigResource",
    "ConfigView",
    "Loader",
    "announce",
    "config_changed",
    "etag_of",
]

# (a connection to read with, the actor reading) -> the resource's JSON body, ready to serialize.
# The loader reads through ``conn`` so that, inside a change's transaction, it sees that change.
Loader = Callable[[AsyncConnection, Actor], Awaitable[Any]]


@dataclass(frozen=True)
class ConfigResource:
    name: str
    load: Loader
    per_user: bool = False
    description: str = ""


@dataclass(frozen=True)
class ConfigView:
    """One resource (or the bundle) as one reader sees it: the JSON body and its ETag."""

    name: str
    data: Any
    body: bytes
    etag: str


def etag_of(body: bytes) -> str:
    """The ETag value (without quotes) of a body: a digest, equal for equal bodies everywhere."""
    return hashlib.sha256(body).hexdigest()[:32]


def _view(name: str, data: Any) -> ConfigView:
    body = dump(data).encode()
    return ConfigView(name, data, body, etag_of(body))


async def announce(
    tx: Tx,
    resource: str,
    etag: str | None,
    *,
    by: dict[str, Any] | None = None,
    user_id: str | None = None,
    channel_id: str | None = None,
) -> None:
    """Append ``config.updated`` for ``resource`` to the transaction's events."""
    data: dict[str, Any] = {"resource": resource, "etag": etag}
    if user_id is not None:
        data["user_id"] = user_id
    if by is not None:
        data["by"] = by
    await tx.emit("config.updated", data, channel_id=channel_id)


class ConfigRegistry:
    """The configuration resources of this hub, in the order they were registered."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._resources: dict[str, ConfigResource] = {}

    def register(self, name: str, load: Loader, *, per_user: bool = False, description: str = "") -> None:
        if not name.isidentifier() or name == "etags":
            raise ValueError(f"{name!r} is not a resource name (a Python identifier, not 'etags')")
        if name in self._resources:
            raise ValueError(f"the configuration resource {name!r} is registered twice")
        self._resources[name] = ConfigResource(name, load, per_user, description)

    def __contains__(self, name: object) -> bool:
        return name in self._resources

    def names(self) -> list[str]:
        return list(self._resources)

    def resource(self, name: str) -> ConfigResource:
        try:
            return self._resources[name]
        except KeyError:
            raise NotFound(f"no configuration resource {name!r}") from None

    async def read(self, actor: Actor, name: str) -> ConfigView:
        res = self.resource(name)
        async with self.store.db.read() as conn:
            return _view(name, await res.load(conn, actor))

    async def bundle(self, actor: Actor) -> ConfigView:
        """Every resource as ``actor`` sees it, each under its name, and ``etags``: each one's ETag
        (what its own route sends), so an app can seed its per-resource cache from the bundle."""
        data: dict[str, Any] = {}
        etags: dict[str, str] = {}
        async with self.store.db.read() as conn:
            for name, res in self._resources.items():
                view = _view(name, await res.load(conn, actor))
                data[name] = view.data
                etags[name] = view.etag
        data["etags"] = etags
        return _view("config", data)

    async def etag(self, conn: AsyncConnection, name: str, actor: Actor | None = None) -> str:
        res = self.resource(name)
        return _view(name, await res.load(conn, actor or system_actor())).etag

    async def changed(
        self,
        tx: Tx,
        name: str,
        *,
        by: dict[str, Any] | None = None,
        user_id: str | None = None,
        reader: Actor | None = None,
    ) -> str | None:
        """Announce that ``name`` changed in this transaction, with its new ETag: the one everyone
        reads, or for a per-user resource the one ``reader`` reads (else None: each revalidates)."""
        res = self._resources.get(name)
        etag = None
        if res is not None and (not res.per_user or reader is not None):
            etag = _view(name, await res.load(tx.conn, reader or system_actor())).etag
        if reader is not None and user_id is None and res is not None and res.per_user:
            user_id = reader.id
        await announce(tx, name, etag, by=by, user_id=user_id)
        return etag


async def config_changed(
    registry: ConfigRegistry | None, tx: Tx, name: str, *, by: dict[str, Any] | None = None
) -> None:
    """``registry.changed`` for a service that may run without a registry (a unit test's)."""
    if registry is not None:
        await registry.changed(tx, name, by=by)
    else:
        await announce(tx, name, None, by=by)
