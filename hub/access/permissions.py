"""The one published catalogue of permissions, and the built-in roles as fixed sets of it.

Custom roles are admin-defined sets taken from the same catalogue; a name outside it is refused.
Later features add their permissions here (and only here), so ``GET /api/v1/permissions``, role
validation and ``GET /api/v1/me`` stay one list.
"""

from __future__ import annotations

__all__ = ["BUILTIN_ROLES", "PERMISSIONS", "READ_LEVELS", "permissions_of"]

PERMISSIONS: dict[str, str] = {
    "conversations.read.all": "read every conversation of the channels you serve",
    "conversations.read.team": "read conversations assigned to one of your teams",
    "conversations.read.mine": "read conversations assigned to you",
    "conversations.read.unassigned": "read conversations assigned to nobody",
    "conversations.update": "change a conversation's status, priority and custom attributes",
    "conversations.assign": "assign conversations to others or to a team (anyone may take one)",
    "messages.send": "send messages, upload files, retry and cancel sends",
    "contacts.read": "read contacts",
    "contacts.update": "change contacts (fields, labels, custom attributes)",
    "contacts.merge": "merge two contacts into one",
    "labels.apply": "add and remove labels on conversations",
    "labels.manage": "define, rename, recolour and delete labels",
    "attributes.manage": "define, change and delete custom attributes of contacts and conversations",
    "notes.write": "write private notes on conversations you can read (never sent to the customer)",
    "config.manage": "manage workspace configuration (availability statuses, assignment policies, quick "
    "replies, shared macros, notification defaults, ...)",
    "channels.manage": "create, change and delete channels and choose who serves them",
    "users.manage": "create, change and deactivate users; manage roles and teams",
    "plugins.read": "list installed plugins",
    "automations.manage": "manage automation rules and business hours; read the automation run log, "
    "dry-run and backtest rules",
    "bots.manage": "create, change and delete agent bots and attach them to channels",
}

# The read levels, widest first: holding any of them lets a user read conversations at all.
READ_LEVELS = (
    "conversations.read.all",
    "conversations.read.team",
    "conversations.read.mine",
    "conversations.read.unassigned",
)

BUILTIN_ROLES: dict[str, frozenset[str]] = {
    "administrator": frozenset(PERMISSIONS),
    "agent": frozenset(
        {
            "conversations.read.all",
            "conversations.update",
            "conversations.assign",
            "messages.send",
            "contacts.read",
            "contacts.update",
            "labels.apply",
            "notes.write",
        }
    ),
}


def permissions_of(role: str, custom: dict[str, frozenset[str]]) -> frozenset[str]:
    """A role's permissions: built-in first, then the admin-defined ones; an unknown role has none."""
    if role in BUILTIN_ROLES:
        return BUILTIN_ROLES[role]
    return custom.get(role, frozenset())
