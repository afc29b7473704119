"""How a benchmark gets its hub: a fresh one per benchmark, or one shared by all in ``--quick``."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import Hub


@dataclass
class Context:
    quick: bool
    postgres: bool
    soak_seconds: float = 60.0
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hub-bench-")))
    shared: bool = False
    _hub: Hub | None = None
    _n: int = 0

    @contextlib.asynccontextmanager
    async def hub(self) -> AsyncIterator[Hub]:
        """A started hub; stopped on exit unless it is the shared one."""
        if self.shared and self._hub is not None:
            self._hub.check_alive()
            yield self._hub
            return
        self._n += 1
        hub = Hub(self.root / f"hub{self._n}", postgres=self.postgres)
        try:
            await hub.start()
            if self.shared:
                self._hub = hub
            yield hub
        finally:
            if not self.shared:
                await hub.stop()

    async def close(self) -> None:
        if self._hub is not None:
            await self._hub.stop()
            self._hub = None
