"""Who may see and do what: the permission catalogue, built-in roles and the acting user's scope.

Every read path asks an ``Actor`` which channels and conversations it may see; every write asks it
for a named permission from ``PERMISSIONS``. Nothing else decides access.
"""

from hub.access.actor import Actor, system_actor
from hub.access.permissions import BUILTIN_ROLES, PERMISSIONS, READ_LEVELS, permissions_of

__all__ = ["BUILTIN_ROLES", "PERMISSIONS", "READ_LEVELS", "Actor", "permissions_of", "system_actor"]
