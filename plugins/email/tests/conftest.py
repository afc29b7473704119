"""Fixtures shared by the email plugin tests: a real Dovecot, a real SMTP server, an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from dovecot import Dovecot
from smtp_server import SmtpServer


def pytest_configure(config: pytest.Config) -> None:
    # The test SMTP server offers AUTH without TLS on loopback on purpose.
    config.addinivalue_line("filterwarnings", "ignore:Requiring AUTH while not requiring TLS:UserWarning")


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A throwaway Dovecot with IDLE on a free port (skips with how to install it when absent)."""
    server = Dovecot().start()
    yield server
    server.close()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """An aiosmtpd server on a free port recording what it receives."""
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client
