"""Keep docs/plugins.md honest: every hook, Channel method, error class, health state, variable and
conformance check it documents exists with the signature shown, everything public is documented,
and the tutorial's plugin, assembled from the page's code blocks, passes the conformance suite."""

from __future__ import annotations

import inspect
import json
import re
import tomllib
from pathlib import Path

import pytest

import hub.errors
import hub.hookspecs
from hub.channel import HEALTH_ACTIONS, Capabilities, Channel, HealthState
from hub.errors import SendErrorClass
from hub.modelref import MODELS as MODELREF_MODELS
from hub.models import ParsedEvent
from hub.testing import pytest_plugin
from hub.testing.conformance import ChannelConformance

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "plugins.md").read_text("utf-8")
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", DOC, flags=re.S | re.M)
PYTHON = [body for lang, body in BLOCKS if lang == "python"]


def _signature(name: str, fn: object) -> str:
    func = fn.__func__ if isinstance(fn, classmethod | staticmethod) else fn
    assert callable(func)
    prefix = "async def" if inspect.iscoroutinefunction(func) else "def"
    # Annotations are strings (from __future__ import annotations): show them as written.
    return f"{prefix} {name}{inspect.signature(func)}".replace("'", "")


def _table_rows() -> dict[str, list[str]]:
    """First cell (without backticks) -> the rows starting with it, for every markdown table."""
    rows: dict[str, list[str]] = {}
    for line in DOC.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1].strip()
            rows.setdefault(first.strip("`"), []).append(line)
    return rows


def _hookspecs() -> dict[str, object]:
    return {
        name: fn
        for name, fn in vars(hub.hookspecs).items()
        if callable(fn) and hasattr(fn, f"{hub.hookspecs.PROJECT}_spec")
    }


def _channel_methods() -> dict[str, object]:
    return {
        name: value
        for name, value in vars(Channel).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or isinstance(value, classmethod | staticmethod))
    }


def _unmarkup(text: str) -> str:
    return " ".join(text.replace("``", "`").split())


# ---- hooks --------------------------------------------------------------------------------------


def test_hookspecs_found() -> None:
    assert {"hub_register_channels", "hub_on_event"} <= set(_hookspecs())


@pytest.mark.parametrize("name", sorted(_hookspecs()))
def test_every_hook_is_documented_with_its_exact_signature(name: str) -> None:
    spec = _hookspecs()[name]
    assert f"#### `{name}`" in DOC, f"docs/plugins.md has no section for {name}"
    signature = _signature(name, spec)
    assert any(block.strip() == signature for block in PYTHON), (
        f"docs/plugins.md must show `{signature}` in a python block of its own"
    )
    first_sentence = _unmarkup(inspect.getdoc(spec) or "").split(". ")[0]
    assert first_sentence and first_sentence in _unmarkup(DOC), "the hook's contract is missing"


def test_no_documented_hook_is_unknown() -> None:
    documented = set(re.findall(r"^#### `(hub_\w+)`", DOC, flags=re.M))
    assert documented == set(_hookspecs())


# ---- Channel ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(_channel_methods()))
def test_every_channel_method_is_documented(name: str) -> None:
    signature = _signature(name, _channel_methods()[name])
    assert f"##### `{name}`" in DOC, f"docs/plugins.md has no section for Channel.{name}"
    assert any(block.strip() == signature for block in PYTHON), (
        f"docs/plugins.md must show `{signature}` in a python block of its own"
    )


def test_no_documented_method_is_unknown() -> None:
    documented = set(re.findall(r"^##### `(\w+)`", DOC, flags=re.M))
    assert documented == set(_channel_methods())


@pytest.mark.parametrize("name", sorted(Channel.__annotations__))
def test_every_class_attribute_is_documented(name: str) -> None:
    assert name in _table_rows(), f"add `{name}` to the class attribute table"


@pytest.mark.parametrize("name", sorted(Capabilities.model_fields))
def test_every_capability_is_documented(name: str) -> None:
    assert name in _table_rows(), f"add `{name}` to the capabilities table"


# ---- errors, health, models, environment --------------------------------------------------------


@pytest.mark.parametrize("error_class", list(SendErrorClass), ids=str)
def test_every_send_error_class_is_documented(error_class: SendErrorClass) -> None:
    assert error_class.value in _table_rows(), f"add `{error_class.value}` to the send error table"


@pytest.mark.parametrize("state", list(HealthState), ids=str)
def test_every_health_state_is_documented_with_its_action(state: HealthState) -> None:
    rows = _table_rows().get(state.value, [])
    assert any(HEALTH_ACTIONS[state] in row for row in rows), (
        f"add `{state.value}` to the health table with the action in HEALTH_ACTIONS"
    )


@pytest.mark.parametrize("name", hub.errors.__all__)
def test_every_error_is_documented(name: str) -> None:
    assert name in _table_rows() or (name == "SendErrorClass" and "`SendErrorClass`" in DOC)


def test_every_parsed_event_model_is_documented() -> None:
    union = ParsedEvent.__origin__  # type: ignore[attr-defined]  # Annotated[Union, Field]
    for model in union.__args__:
        rows = _table_rows().get(model.__name__, [])
        type_cell = f"| `{model.model_fields['type'].default}` |"
        assert any(type_cell in row for row in rows), f"add `{model.__name__}` to the models table"


def test_every_environment_variable_is_documented() -> None:
    source = (ROOT / "hub" / "plugins.py").read_text("utf-8")
    variables = set(re.findall(r"\bHUB_[A-Z_]+\b", source))
    assert variables >= {"HUB_STRICT_PLUGINS", "HUB_DISABLE_PLUGINS", "HUB_TRACE_HOOKS"}
    for name in variables:
        assert name in _table_rows(), f"add `{name}` to the environment variable table"


# ---- the test kit -------------------------------------------------------------------------------


def test_every_conformance_check_is_documented() -> None:
    checks = {n for n in dir(ChannelConformance) if n.startswith("test_")}
    assert len(checks) > 15
    rows = _table_rows()
    assert not checks - set(rows), f"document these checks: {sorted(checks - set(rows))}"
    documented = {r for r in rows if r.startswith("test_")}
    assert documented <= checks, f"documented but gone: {sorted(documented - checks)}"


def test_every_conformance_input_is_documented() -> None:
    inputs = [n for n in vars(ChannelConformance) if not n.startswith(("_", "test_", "pytest_"))]
    rows = _table_rows()
    for name in inputs:
        if name in {"make_channel", "planted_secrets", "no_network", "channel_id", "garbage_body"}:
            continue  # helpers with sensible defaults, described in the module's docstring
        assert name in rows or f"{name}(self, body)" in rows, f"document `{name}`"


def test_every_fixture_is_documented() -> None:
    fixtures = [
        name
        for name, obj in vars(pytest_plugin).items()
        if not name.startswith("_")
        and (hasattr(obj, "_fixture_function_marker") or hasattr(obj, "_pytestfixturefunction"))
    ]
    assert len(fixtures) >= 6
    for name in fixtures:
        assert name in _table_rows(), f"add the `{name}` fixture to the fixtures table"


# ---- the code blocks ----------------------------------------------------------------------------


def test_code_blocks_parse() -> None:
    for lang, body in BLOCKS:
        if lang == "toml":
            tomllib.loads(body)
        elif lang == "python":
            source = body
            if body.strip().startswith(("def ", "async def ")) and body.strip().count("\n") == 0:
                source = body.strip() + ": ..."
            elif body.startswith("    "):
                source = "class _Continued:\n" + body
            compile(source, "docs/plugins.md", "exec")


def _tutorial_files() -> dict[str, str]:
    files: dict[str, list[str]] = {}
    class_parts: list[str] = []
    tails: list[str] = []
    for body in PYTHON:
        first = body.splitlines()[0]
        if first == "    # ChirpChannel, continued":
            class_parts.append(body)
        elif first == "# hub_chirp/channel.py, continued":
            tails.append(body)
        elif first.startswith("# ") and first.endswith(".py"):
            files.setdefault(first[2:], []).append(body)
    channel = files["hub_chirp/channel.py"]
    files["hub_chirp/channel.py"] = [*channel, *class_parts, *tails]
    return {path: "\n".join(parts) for path, parts in files.items()}


def _message(update: int, message: int, text: str, **extra: object) -> dict[str, object]:
    msg = {"message_id": message, "from": {"id": 42, "first_name": "Zoë"}, "date": 1700000000}
    return {"update_id": update, "message": {**msg, "text": text, **extra}}


def _expected(message: int, text: str, **extra: object) -> dict[str, object]:
    return {
        "type": "message",
        "external_id": str(message),
        "contact": {"ids": ["chirp:42"], "name": "Zoë"},
        "kind": "text",
        "text": text,
        "timestamp": "2023-11-14T22:13:20Z",
        **extra,
    }


TUTORIAL_FIXTURES = {
    "text": ([_message(1, 10, "héllo 👋")], [_expected(10, "héllo 👋")]),
    "reply": (
        [_message(2, 11, "yes", reply_to_message_id=9)],
        [_expected(11, "yes", reply_to_external_id="9")],
    ),
    "receipts": (
        [
            {"update_id": 3, "receipt": {"message_id": 7, "read": True, "date": 1700000000}},
            {"update_id": 4, "receipt": {"message_id": 8, "read": False, "date": 1700000000}},
        ],
        [
            {"type": "status", "external_id": "7", "status": "read", "timestamp": 1700000000},
            {"type": "status", "external_id": "8", "status": "delivered", "timestamp": 1700000000},
        ],
    ),
}


def test_tutorial_plugin_passes_the_conformance_suite(pytester: pytest.Pytester) -> None:
    for path, source in _tutorial_files().items():
        target = pytester.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source, "utf-8")
    fixtures = pytester.path / "tests" / "fixtures"
    fixtures.mkdir(parents=True)
    for name, (updates, expected) in TUTORIAL_FIXTURES.items():
        body = json.dumps({"updates": updates}, ensure_ascii=False)
        (fixtures / f"{name}.json").write_text(body, "utf-8")
        (fixtures / f"{name}.expected.json").write_text(json.dumps(expected), "utf-8")
    batch = [_message(20 + i, 30 + i, str(i)) for i in range(3)]
    batch.append({"update_id": 24, "receipt": {"message_id": 7, "read": True, "date": 1}})
    (fixtures / "batch.json").write_text(json.dumps({"updates": batch}))
    poll = [{"update_id": 25, "from": {"id": 42}, "poll": {"q": "?"}}, {"update_id": 26}]
    (fixtures / "poll.json").write_text(json.dumps({"updates": poll}))
    pytester.syspathinsert()
    result = pytester.runpytest_inprocess(
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "-rs",
        "tests/test_chirp.py",
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()
    assert outcomes.get("passed", 0) >= 35, result.stdout.str()
    # The tutorial's channel is minimal: what it leaves out is skipped, each with its reason.
    reasons = {
        "no script for 'needs_template'",
        "set `edits`",
        "inbound attachment",
        "bad_credentials",
        "has no health_check",
        "ingest_harness",
    }
    skipped = [line for line in result.stdout.lines if line.startswith("SKIPPED")]
    assert len(skipped) == len(reasons), skipped
    assert all(any(r in line for line in skipped) for r in reasons), skipped


# ---- the generated model reference --------------------------------------------------------------


def test_model_reference_is_generated_from_the_current_models() -> None:
    from hub.modelref import rewrite

    assert rewrite(DOC) == DOC, "the models changed: run `python -m hub.modelref` and commit docs/plugins.md"


@pytest.mark.parametrize("model", MODELREF_MODELS, ids=lambda m: m.__name__)
def test_every_field_of_the_public_models_has_a_meaning(model: type) -> None:
    from hub.modelref import _rows

    vague = [name for name, _, _, meaning in _rows(model) if not meaning]
    assert not vague, f"document {model.__name__}'s fields {vague} (a docstring under each field)"


def test_the_reference_covers_every_parsed_event_and_the_send_models() -> None:
    union = ParsedEvent.__origin__  # type: ignore[attr-defined]
    wanted = {m.__name__ for m in union.__args__} | {
        "MediaContent", "Attachment", "OutboundMessage", "OutboundAttachment", "SendContext", "SendReceipt",
        "ContactRef",
    }  # fmt: skip
    documented = set(re.findall(r"^#### `(\w+)`$", DOC, flags=re.M))
    assert wanted <= documented, f"missing from the model reference: {sorted(wanted - documented)}"


def test_every_quality_rule_is_documented_with_its_tier() -> None:
    from hub.quality.rules import RULES

    rows = [line for line in DOC.splitlines() if line.startswith("| ")]
    for rule in RULES:
        assert any(row.startswith(f"| {rule.tier} | `{rule.id}` |") for row in rows), (
            f"add `{rule.id}` to the quality tiers table"
        )


def test_the_documented_event_types_are_the_ones_the_hub_emits() -> None:
    """``hub_on_event`` lists the event types; each must be one the code writes, and every type the
    code writes must be listed (a type promised but never emitted is a broken promise)."""
    types = r"([a-z]+\.[a-z_]*(?:created|updated|changed|deleted))"
    in_code = set()
    for path in (ROOT / "hub").rglob("*.py"):
        in_code |= set(re.findall(f'"{types}"', path.read_text()))
    doc = hub.hookspecs.hub_on_event.__doc__ or ""
    documented = set(re.findall(f"``{types}``", doc))
    assert documented == in_code, (documented, in_code)
    plugins_md = (ROOT / "docs" / "plugins.md").read_text()
    section = plugins_md[plugins_md.index("#### `hub_on_event`") :][:1500]
    assert set(re.findall(f"`{types}`", section)) == in_code


# ---- notifiers ----------------------------------------------------------------------------------


def test_the_documented_notifier_registers_through_its_hook_and_delivers() -> None:
    """The example of docs/plugins.md "Notifiers" is a working plugin: it loads through
    ``hub_register_notifiers``, its settings come from the documented TOML, and ``deliver`` sends
    to each device and classifies failures as the page says."""
    import asyncio
    import logging
    import types
    from datetime import UTC, datetime

    import httpx
    import respx

    from hub.notify import Device, Notification, NotifierContext, NotifyError, Recipient
    from hub.plugins import load_notifiers, load_plugins

    source = next(b for b in PYTHON if b.startswith("# hub_pager/__init__.py"))
    module = types.ModuleType("hub_pager")
    exec(compile(source, "docs/plugins.md", "exec", dont_inherit=True), module.__dict__)
    pm, _, report = load_plugins(extra=[("pager", module)], disabled=[])
    registry = load_notifiers(pm, report)
    assert {"webhook", "email", "pager"} <= set(registry.types())
    assert "hub_register_notifiers" in next(p for p in report.loaded if p.name == "pager").hooks
    toml = next(body for lang, body in BLOCKS if lang == "toml" and "[notifiers.pager]" in body)
    values = tomllib.loads(toml.replace("${PAGER_API_KEY}", "k-123"))["notifiers"]["pager"]
    cls = registry.get("pager")
    assert cls is not None and cls.medium == "push"
    note = Notification(
        id="ntf_1",
        delivery_id="ntf_1.pager",
        event="mention",
        title="Ann mentioned you",
        created_at=datetime.now(UTC),
        user=Recipient(id="usr_1", email="bo@example.com"),
        devices=[Device(id="dev_1", provider="pager", token="tok-1")],
    )

    async def run() -> None:
        async with httpx.AsyncClient() as http:
            notifier = cls(
                cls.Settings.model_validate(values), NotifierContext(http, logging.getLogger("t"), "")
            )
            with respx.mock:
                route = respx.post("https://pager.example/send").respond(200)
                await notifier.deliver(note)
                assert route.calls.last.request.headers["authorization"] == "Bearer k-123"
                assert json.loads(route.calls.last.request.content)["to"] == "tok-1"
                respx.post("https://pager.example/send").respond(503)
                with pytest.raises(NotifyError) as retry:
                    await notifier.deliver(note)
                assert retry.value.retryable
                respx.post("https://pager.example/send").respond(403)
                with pytest.raises(NotifyError) as refused:
                    await notifier.deliver(note)
                assert not refused.value.retryable

    asyncio.run(run())
