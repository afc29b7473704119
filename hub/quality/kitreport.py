"""A pytest plugin that records the conformance kit's results for ``hub plugin check``.

``-p hub.quality.kitreport --hub-kit-report=FILE`` keeps only the checks of ``ChannelConformance``
subclasses, and writes to ``FILE`` each check's worst outcome over its parametrized cases (failed
over skipped over passed) with the first failure or skip reason, plus what the suites declare
(how many parse cases, which event types their expectations hold).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hub.testing.conformance import ChannelConformance, _events

_RANK = {"passed": 0, "skipped": 1, "failed": 2}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--hub-kit-report", help="write the conformance kit's results to this JSON file")


class _Report:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.checks: dict[str, dict[str, Any]] = {}
        self.suites: dict[str, dict[str, Any]] = {}

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        keep, drop = [], []
        for item in items:
            cls = getattr(item, "cls", None)
            if cls is not None and issubclass(cls, ChannelConformance) and item.name.startswith("test_"):
                keep.append(item)
                self._describe(cls)
            else:
                drop.append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = keep

    def _describe(self, cls: type[ChannelConformance]) -> None:
        if cls.__qualname__ in self.suites or cls.channel_cls is None:
            return
        types = sorted({e.type for case in cls.cases for e in _events(case.expected)})
        self.suites[cls.__qualname__] = {
            "channel": cls.channel_cls.type_name,
            "cases": len(cls.cases),
            "event_types": types,
            "edits": len(cls.edits),
            "batch": cls.batch is not None,
            "unknown": cls.unknown is not None,
        }

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call" and not (report.skipped or report.failed):
            return
        check = report.nodeid.split("::")[-1].split("[")[0]
        outcome = "failed" if report.failed else "skipped" if report.skipped else "passed"
        entry = self.checks.setdefault(check, {"outcome": "passed", "detail": None, "cases": 0})
        if report.when == "call" or outcome != "passed":
            entry["cases"] += 1
        if _RANK[outcome] > _RANK[entry["outcome"]]:
            entry["outcome"] = outcome
            entry["detail"] = _detail(report)

    def pytest_sessionfinish(self) -> None:
        self.path.write_text(json.dumps({"checks": self.checks, "suites": self.suites}, indent=2))


def _detail(report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    text = str(report.longrepr or "")
    errors = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    return (errors[0] if errors else text.splitlines()[-1] if text else "")[:300]


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--hub-kit-report")
    if path:
        config.pluginmanager.register(_Report(Path(path)), "hub-kit-report")
