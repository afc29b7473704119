"""Fixtures and settings shared by the email plugin tests."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # The test SMTP server offers AUTH without TLS on loopback on purpose.
    config.addinivalue_line("filterwarnings", "ignore:Requiring AUTH while not requiring TLS:UserWarning")
