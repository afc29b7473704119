"""Email channel (IMAP in, SMTP out): a skeleton until its channel issue fills it.

Installed and discovered through the ``hub`` entry-point group like any third-party plugin; it
registers no channel type yet, so the hub lists it and offers nothing half-built to admins.
"""

__version__ = "0.1.0"
