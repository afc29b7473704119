"""Services: every read and write of the web layer, the CLI and automations, with the acting
user's scope and permissions applied in one place."""
