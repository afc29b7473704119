"""Settings every Meta channel shares."""

from __future__ import annotations

__all__ = ["DEFAULT_API_BASE_URL", "check_base_url"]

# Graph API v26.0 is the newest version Meta's changelog lists (released 2026-07-29).
DEFAULT_API_BASE_URL = "https://graph.facebook.com/v26.0"


def check_base_url(url: str) -> str:
    """A Graph API base URL without its trailing slash; anything but http(s) is refused."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError("api_base_url must be an http(s) URL such as " + DEFAULT_API_BASE_URL)
    return url
