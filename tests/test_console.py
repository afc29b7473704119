"""The admin console in process (no browser): a third party's Settings model becomes a form with
no console code, CSRF and permissions are enforced on the server, secrets never reach a page.
The browser tests (tests/e2e/test_e2e_console.py) cover the same pages through chromium."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import pytest
from pydantic import Field, SecretStr

from hub import hookimpl
from hub.access import system_actor
from hub.appkeys import STORE
from hub.channel import Capabilities, Channel, ChannelRegistrar, ChannelSettings, RawEvent
from hub.console.forms import form_fields, parse_form
from hub.models import OutboundMessage, ParsedEvent, SendReceipt
from hub.testing.pytest_plugin import HubTestApp
from hub.users import create_user

PASSWORD = "console-test-password"
PLANTED = "planted-acme-key-7f3a9c"


class AcmeSettings(ChannelSettings):
    region: Literal["eu", "us"] = Field(description="Where the account lives")
    api_key: SecretStr = Field(description="Key from the Acme dashboard")
    retries: int = Field(default=2, ge=0, le=5, description="Tries per send")
    verbose: bool = False
    tags: list[str] = Field(default_factory=list, description="Labels for the account")
    note: str | None = None


class AcmeChannel(Channel):
    """Acme Messaging: a third party's channel the console has never heard of."""

    type_name: ClassVar[str] = "acme"
    display_name: ClassVar[str] = "Acme"
    Settings: ClassVar[type[ChannelSettings]] = AcmeSettings
    capabilities: ClassVar[Capabilities] = Capabilities(text=True)

    def authenticate(self, body: bytes, headers: Mapping[str, str]) -> None:
        return None

    def parse(self, raw: RawEvent) -> list[ParsedEvent]:
        return []

    async def send(self, message: OutboundMessage) -> SendReceipt:
        raise NotImplementedError


class AcmePlugin:
    @hookimpl
    def hub_register_channels(self, register: ChannelRegistrar) -> None:
        register.add(AcmeChannel)


def test_a_settings_model_becomes_fields_with_types_bounds_and_descriptions() -> None:
    fields = {f.name: f for f in form_fields(AcmeSettings)}
    assert list(fields) == ["region", "api_key", "retries", "verbose", "tags", "note"]
    assert fields["region"].widget == "select" and fields["region"].choices == ["eu", "us"]
    assert fields["region"].required and fields["region"].description == "Where the account lives"
    assert fields["api_key"].widget == "password" and fields["api_key"].required
    assert fields["retries"].widget == "number" and fields["retries"].value == "2"
    assert fields["retries"].attrs == {"step": "1", "min": "0", "max": "5"}
    assert fields["verbose"].widget == "checkbox" and not fields["verbose"].checked
    assert fields["tags"].widget == "json" and fields["tags"].value == "[]"
    assert fields["note"].widget == "text" and fields["note"].nullable and not fields["note"].required


def test_a_stored_secret_is_never_a_value_and_stays_when_left_empty() -> None:
    fields = {
        f.name: f for f in form_fields(AcmeSettings, {"api_key": "x"}, stored_secrets=frozenset({"api_key"}))
    }
    assert fields["api_key"].value == "" and fields["api_key"].has_stored_secret
    assert not fields["api_key"].required
    form = {"region": "eu", "api_key": "", "retries": "3", "tags": '["a"]', "note": ""}
    values, problems = parse_form(AcmeSettings, form, editing=True)
    assert problems == {}
    assert "api_key" not in values  # kept as stored
    assert values == {"region": "eu", "retries": "3", "verbose": False, "tags": ["a"], "note": None}
    _, problems = parse_form(AcmeSettings, {**form, "tags": "[not json"}, editing=False)
    assert set(problems) == {"tags"}


async def _login(hub: HubTestApp, email: str, role: str = "administrator") -> str:
    """Log in through the form; the CSRF token of the session."""
    await create_user(hub.client.app[STORE].db, email, role, PASSWORD)
    page = await hub.client.get("/console/login")
    token = _csrf(await page.text())
    resp = await hub.client.post(
        "/console/login",
        data={"email": email, "password": PASSWORD, "csrf_token": token, "next": "/console/"},
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    assert resp.headers["Location"] == "/console/"
    home = await hub.client.get("/console/")
    assert home.status == 200
    return _csrf(await home.text())


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


@pytest.fixture
async def acme_hub(make_hub_client: Any) -> HubTestApp:
    hub: HubTestApp = await make_hub_client(AcmePlugin())
    return hub


async def test_a_third_party_channel_is_set_up_through_its_generated_form(acme_hub: HubTestApp) -> None:
    hub = acme_hub
    csrf = await _login(hub, "owner@example.test")
    choose = await (await hub.client.get("/console/channels/new")).text()
    assert 'href="/console/channels/new/acme"' in choose and "Acme Messaging" in choose

    page = await (await hub.client.get("/console/channels/new/acme")).text()
    assert '<select id="f-region" name="region"' in page
    assert re.search(r'<input id="f-api_key" name="api_key" type="password" value=""', page)
    assert re.search(r'name="retries" type="number" value="2"[^>]* step="1" min="0" max="5"', page)
    assert "Key from the Acme dashboard" in page

    bad = {"csrf_token": csrf, "name": "Acme", "region": "eu", "api_key": PLANTED, "retries": "9"}
    resp = await hub.client.post("/console/channels/new/acme", data=bad, allow_redirects=False)
    assert resp.status == 422
    html = await resp.text()
    assert re.search(r'<p class="error" id="e-retries">Input should be less than or equal to 5</p>', html)
    assert PLANTED not in html  # the secret typed is not sent back

    good = {**bad, "retries": "4", "id": "acme-1", "verbose": "on", "tags": '["vip"]'}
    resp = await hub.client.post("/console/channels/new/acme", data=good, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    assert resp.headers["Location"] == "/console/channels/acme-1?created=1"
    detail = await (await hub.client.get("/console/channels/acme-1")).text()
    assert "Waiting for the provider" in detail and "/webhooks/acme-1" in detail
    assert PLANTED not in detail

    api = await (await hub.client.get("/api/v1/admin/channels/acme-1", headers=hub.admin_headers)).json()
    assert api["settings"] == {
        "region": "eu",
        "api_key": "********",
        "retries": 4,
        "verbose": True,
        "tags": ["vip"],
        "note": None,
    }

    # Editing with the secret left empty keeps it; the page never shows it.
    settings = await (await hub.client.get("/console/channels/acme-1/settings")).text()
    assert PLANTED not in settings and "stored; leave empty to keep" in settings
    edit = {
        "csrf_token": csrf,
        "name": "Acme EU",
        "region": "us",
        "api_key": "",
        "retries": "1",
        "tags": "[]",
    }
    resp = await hub.client.post("/console/channels/acme-1/settings", data=edit, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    svc = hub.client.app[STORE]
    assert svc is not None
    api = await (await hub.client.get("/api/v1/admin/channels/acme-1", headers=hub.admin_headers)).json()
    assert api["name"] == "Acme EU" and api["settings"]["region"] == "us"
    assert api["settings"]["api_key"] == "********"  # still set


async def test_unsafe_requests_need_the_sessions_csrf_token(acme_hub: HubTestApp) -> None:
    hub = acme_hub
    csrf = await _login(hub, "owner@example.test")
    form = {"name": "forged", "permissions": "plugins.read"}
    for extra in ({}, {"csrf_token": "wrong"}):
        resp = await hub.client.post("/console/roles", data={**form, **extra}, allow_redirects=False)
        assert resp.status == 403
        assert "did not come from the console" in await resp.text()
    resp = await hub.client.post("/console/roles", data=form, headers={"X-CSRF-Token": "wrong"})
    assert resp.status == 403
    roles = await (await hub.client.get("/api/v1/admin/roles", headers=hub.admin_headers)).json()
    assert "forged" not in {r["name"] for r in roles["roles"]}
    # The login form needs it too (no login CSRF).
    resp = await hub.client.post("/console/login", data={"email": "owner@example.test", "password": PASSWORD})
    assert resp.status == 403
    # With the token (as a field or as htmx's header) it works.
    resp = await hub.client.post("/console/roles", data={**form, "csrf_token": csrf}, allow_redirects=False)
    assert resp.status == 303
    resp = await hub.client.post(
        "/console/roles",
        data={**form, "name": "readers2"},
        headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
    )
    assert resp.status == 204 and resp.headers["HX-Redirect"] == "/console/roles"
    roles = await (await hub.client.get("/api/v1/admin/roles", headers=hub.admin_headers)).json()
    assert {"forged", "readers2"} <= {r["name"] for r in roles["roles"]}


async def test_pages_and_buttons_follow_the_users_permissions(acme_hub: HubTestApp) -> None:
    hub = acme_hub
    csrf = await _login(hub, "agent@example.test", role="agent")
    home = await (await hub.client.get("/console/")).text()
    assert 'href="/console/channels"' not in home and 'href="/console/users"' not in home
    for path in (
        "/console/channels",
        "/console/users",
        "/console/roles",
        "/console/plugins",
        "/console/teams",
    ):
        resp = await hub.client.get(path)
        assert resp.status == 403, path
        assert "You may not do this" in await resp.text()
    resp = await hub.client.post(
        "/console/users", data={"csrf_token": csrf, "email": "new@example.test", "role": "agent"}
    )
    assert resp.status == 403
    users = await (await hub.client.get("/api/v1/admin/users", headers=hub.admin_headers)).json()
    assert "new@example.test" not in {u["email"] for u in users["users"]}


async def test_a_deactivated_user_is_logged_out_of_the_console(acme_hub: HubTestApp) -> None:
    hub = acme_hub
    await _login(hub, "leaver@example.test")
    users = await (await hub.client.get("/api/v1/admin/users", headers=hub.admin_headers)).json()
    leaver = next(u for u in users["users"] if u["email"] == "leaver@example.test")
    resp = await hub.client.patch(
        f"/api/v1/admin/users/{leaver['id']}", json={"active": False}, headers=hub.admin_headers
    )
    assert resp.status == 200
    resp = await hub.client.get("/console/channels", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/console/login")


async def test_the_first_administrator_is_created_with_the_link_the_hub_logged(
    aiohttp_client: Any, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from hub.appkeys import ORG
    from hub.config import HubConfig, HubSection
    from hub.web.app import create_app

    config = HubConfig(
        hub=HubSection(
            database_url=f"sqlite:///{tmp_path}/hub.db",
            data_dir=str(tmp_path / "data"),
            secret_key="hub-testing-secret-key",
            public_url="http://hub.test",
        )
    )
    caplog.set_level("WARNING", logger="hub.console")
    client = await aiohttp_client(create_app(config))
    match = re.search(r"http://hub\.test(/console/setup\?token=\S+)", caplog.text)
    assert match, caplog.text
    link = match.group(1)
    token = link.split("token=")[1]

    assert (await client.get("/console/setup?token=guessed")).status == 403
    login = await (await client.get("/console/login")).text()
    assert "No administrator yet" in login
    page = await client.get(link)
    assert page.status == 200
    csrf = _csrf(await page.text())
    form = {
        "csrf_token": csrf,
        "token": token,
        "email": "first@example.test",
        "password": "pw",
        "confirm": "pw",
    }
    resp = await client.post("/console/setup", data=form)
    assert resp.status == 422 and "Choose a password of 8" in await resp.text()
    form |= {"password": "first-admin-pw", "confirm": "first-admin-pw"}
    assert (await client.post("/console/setup", data={**form, "token": "guessed"})).status == 403
    resp = await client.post("/console/setup", data=form, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/console/channels/new"
    home = await client.get("/console/channels/new")
    assert home.status == 200  # logged in as the new admin, with a new session and CSRF token
    assert _csrf(await home.text()) != csrf
    form["csrf_token"] = _csrf(await home.text())
    users = await client.app[ORG].list_users(system_actor())
    assert [(u["email"], u["role"]) for u in users] == [("first@example.test", "administrator")]
    # Spent: the page is closed for good, whoever asks.
    resp = await client.post(
        "/console/setup", data={**form, "email": "second@example.test"}, allow_redirects=False
    )
    assert resp.status == 303 and resp.headers["Location"] == "/console/login"
    assert "No administrator yet" not in await (await client.get("/console/login")).text()


# ---- the workspace pages' form helpers ----------------------------------------------------------


def test_a_refused_form_shows_each_error_beside_its_field_or_row() -> None:
    from pydantic import ValidationError

    from hub.console.base import field_errors
    from hub.services.errors import Conflict, Invalid
    from hub.web.workspace import MacroIn

    with pytest.raises(ValidationError) as refused:
        MacroIn.model_validate(
            {
                "name": "",
                "actions": [{"type": "set_status", "status": "open"}, {"type": "snooze", "minutes": "x"}],
            }
        )
    errors = field_errors(refused.value, "name")
    assert set(errors) == {"name", "actions.1"}  # the second row, not the whole list
    assert "integer" in errors["actions.1"]
    invalid = Invalid("preferences.mention.fax", "unknown medium")
    assert field_errors(invalid, "x") == {"preferences": "unknown medium"}
    assert field_errors(Conflict("a label named 'VIP' already exists"), "name") == {
        "name": "a label named 'VIP' already exists"
    }


def test_the_macro_editor_orders_rows_by_step_and_turns_names_into_ids() -> None:
    from hub.console.workspace import _action, _rows

    form = {
        "action_type_0": "set_status",
        "action_value_0": "resolved",
        "action_pos_0": "3",
        "action_type_1": "",  # an empty row is left out
        "action_value_1": "ignored",
        "action_type_2": "add_label",
        "action_value_2": "VIP",
        "action_pos_2": "1",
        "action_type_3": "assign_agent",
        "action_value_3": "Ana@Example.com",
        "action_pos_3": "not a number",  # keeps its place in the form (4th)
    }
    rows = _rows(form)
    assert [r["type"] for r in rows] == ["add_label", "set_status", "assign_agent"]
    ids = {"user_id": {"ana@example.com": "usr_1"}, "team_id": {}, "quick_reply_id": {"hi": "qr_1"}}
    assert _action("assign_agent", "Ana@Example.com", ids) == {"type": "assign_agent", "user_id": "usr_1"}
    assert _action("assign_team", "", ids) == {"type": "assign_team", "team_id": None}
    assert _action("send_quick_reply", "HI", ids) == {"type": "send_quick_reply", "quick_reply_id": "qr_1"}
    assert _action("snooze", "30", ids) == {"type": "snooze", "minutes": 30}
    assert _action("set_custom_attribute", "plan=42", ids)["value"] == 42
    assert _action("set_custom_attribute", "plan=gold", ids)["value"] == "gold"
    assert _action("set_custom_attribute", "plan={}", ids)["value"] == "{}"  # only scalars parse


def test_an_attribute_form_sends_only_the_constraints_its_type_takes() -> None:
    from hub.console.workspace import _definition
    from hub.web.config import attribute_spec

    shown = {
        "name": "Tier",
        "required": True,
        "options": "gold\n\n silver \n",
        "pattern": "^x$",
        "min": "3",
        "max": "",
        "description": "",
        "position": "2",
    }
    spec = attribute_spec(
        {"applies_to": "contact", "key": "tier", "type": "list"} | _definition("list", shown)
    )
    assert (spec["options"], spec["required"], spec["position"]) == (["gold", "silver"], True, 2)
    assert "pattern" not in spec and "min" not in spec
    text = attribute_spec(
        {"applies_to": "contact", "key": "code", "type": "text"} | _definition("text", shown)
    )
    assert (text["pattern"], text["min"]) == ("^x$", 3) and isinstance(text["min"], int)


# ---- automations, business hours, bots ----------------------------------------------------------


async def test_a_rule_is_created_in_the_editor_refused_beside_its_json_and_moved(
    acme_hub: HubTestApp,
) -> None:
    hub = acme_hub
    csrf = await _login(hub, "auto-admin@example.test")
    rule = {
        "csrf_token": csrf,
        "name": "refunds",
        "mode": "live",
        "enabled": "on",
        "trigger": '{"type": "message_created", "direction": "inbound"}',
        "conditions": '{"all": [{"field": "message.text", "op": "contains", "value": "refund"}]}',
        "actions": '[{"type": "add_label", "label": "refunds"}]',
        "cooldown_minutes": "0",
    }
    # Unreadable JSON, and JSON the API's model refuses: each error beside its text area.
    bad = {**rule, "trigger": "{not json", "actions": '[{"type": "no_such_action"}]'}
    resp = await hub.client.post("/console/automations", data=bad, allow_redirects=False)
    assert resp.status == 422
    html = await resp.text()
    assert re.search(r'<p class="error" id="e-trigger">not JSON', html)
    resp = await hub.client.post(
        "/console/automations", data={**rule, "actions": "[]"}, allow_redirects=False
    )
    assert resp.status == 422
    assert re.search(r'<p class="error" id="e-actions">.*at least 1 item', await resp.text())
    api = "/api/v1/admin/automations/rules"
    assert (await (await hub.client.get(api, headers=hub.admin_headers)).json())["rules"] == []

    resp = await hub.client.post("/console/automations", data=rule, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    rules = (await (await hub.client.get(api, headers=hub.admin_headers)).json())["rules"]
    assert [r["name"] for r in rules] == ["refunds"]
    first = rules[0]
    assert resp.headers["Location"] == f"/console/automations/{first['id']}"
    assert first["definition"]["conditions"]["all"][0]["value"] == "refund"

    # An edit is a new version; the second rule moves above the first.
    resp = await hub.client.post(
        f"/console/automations/{first['id']}", data={**rule, "name": "refunds v2"}, allow_redirects=False
    )
    assert resp.status == 303, await resp.text()
    page = await (await hub.client.get(f"/console/automations/{first['id']}")).text()
    assert "Version 2: refunds v2" in page and "Version 1: refunds" in page
    resp = await hub.client.post(
        "/console/automations", data={**rule, "name": "second"}, allow_redirects=False
    )
    assert resp.status == 303
    rules = (await (await hub.client.get(api, headers=hub.admin_headers)).json())["rules"]
    second = next(r for r in rules if r["name"] == "second")
    for path in (f"/{second['id']}/move/up", f"/{first['id']}/shadow", f"/{second['id']}/disable"):
        resp = await hub.client.post(
            "/console/automations" + path, data={"csrf_token": csrf}, allow_redirects=False
        )
        assert resp.status == 303, path
    rules = (await (await hub.client.get(api, headers=hub.admin_headers)).json())["rules"]
    assert [(r["name"], r["mode"], r["enabled"]) for r in rules] == [
        ("second", "live", False),
        ("refunds v2", "shadow", True),
    ]

    # A backtest of the draft (nothing stored yet) shows its report; a dry run of a missing event
    # is refused beside the event number.
    resp = await hub.client.post("/console/automations-try/backtest", data={**rule, "days": "2"})
    assert resp.status == 200
    html = await resp.text()
    assert "Backtest report" in html and "Events examined" in html
    # The API's backtest of the same draft and of the saved rule (the same service) agree.
    draft = {k: json.loads(rule[k]) for k in ("trigger", "conditions", "actions")}
    for body in ({"rule": {"name": "refunds", **draft}}, {"rule_id": first["id"]}):
        got = await hub.client.post(
            "/api/v1/admin/automations/backtest", json={**body, "days": 2.0}, headers=hub.admin_headers
        )
        assert got.status == 200, await got.text()
        examined = (await got.json())["events_examined"]
        assert re.search(rf"<dt>Events examined</dt><dd>{examined}</dd>", html)
    resp = await hub.client.post("/console/automations-try/dry-run", data={**rule, "event_seq": "999999"})
    assert resp.status == 422
    assert 'id="e-event_seq"' in await resp.text()


async def test_bots_show_their_secret_once_and_agents_are_refused(acme_hub: HubTestApp) -> None:
    hub = acme_hub
    csrf = await _login(hub, "bot-admin@example.test")
    resp = await hub.client.post(
        "/console/bots",
        data={
            "csrf_token": csrf,
            "name": "Helper",
            "kind": "webhook",
            "webhook_url": "https://bot.example/hook",
        },
    )
    assert resp.status == 200, await resp.text()
    html = await resp.text()
    secret = re.search(r'id="bot-secret" type="text" value="([^"]+)"', html)
    token = re.search(r'id="bot-token" type="text" value="([^"]+)"', html)
    assert secret and token
    listed = await (await hub.client.get("/console/bots")).text()
    assert "Helper" in listed and secret.group(1) not in listed and token.group(1) not in listed
    bots = (await (await hub.client.get("/api/v1/admin/bots", headers=hub.admin_headers)).json())["bots"]
    assert [b["name"] for b in bots] == ["Helper"]
    # The model's refusal is on the page, nothing stored.
    resp = await hub.client.post(
        "/console/bots", data={"csrf_token": csrf, "name": "NoUrl", "kind": "webhook"}
    )
    assert resp.status == 422
    bots = (await (await hub.client.get("/api/v1/admin/bots", headers=hub.admin_headers)).json())["bots"]
    assert len(bots) == 1

    agent_csrf = await _login(hub, "bot-agent@example.test", role="agent")
    home = await (await hub.client.get("/console/")).text()
    for path in ("/console/automations", "/console/business-hours", "/console/bots"):
        assert f'href="{path}"' not in home
        assert (await hub.client.get(path)).status == 403
    for path, form in (
        ("/console/automations", {"name": "x", "trigger": "{}", "actions": "[]"}),
        (f"/console/bots/{bots[0]['id']}/rotate", {}),
        (f"/console/bots/{bots[0]['id']}/delete", {}),
        ("/console/business-hours", {"name": "x"}),
    ):
        resp = await hub.client.post(path, data={"csrf_token": agent_csrf, **form}, allow_redirects=False)
        assert resp.status == 403, path
    bots = (await (await hub.client.get("/api/v1/admin/bots", headers=hub.admin_headers)).json())["bots"]
    assert [b["name"] for b in bots] == ["Helper"]


async def test_business_hours_and_a_bots_channels_are_set_from_the_console(acme_hub: HubTestApp) -> None:
    hub = acme_hub
    csrf = await _login(hub, "hours-admin@example.test")
    channel = {"csrf_token": csrf, "name": "Acme", "region": "eu", "api_key": "k", "id": "acme-h"}
    assert (
        await hub.client.post("/console/channels/new/acme", data=channel, allow_redirects=False)
    ).status == 303
    hours = {
        "csrf_token": csrf,
        "name": "Office",
        "scope_type": "channel",
        "scope_id": "acme-h",
        "timezone": "Europe/Lisbon",
        "weekly": '{"mon": [["09:00", "17:00"]]}',
        "holidays": "2026-12-25, 2027-01-01",
        "reply": "on",
        "reply_text": "We are closed.",
    }
    for field, bad in (("timezone", "Mars/Base"), ("weekly", '{"mon": [["9", "17"]]}'), ("scope_id", "nope")):
        resp = await hub.client.post("/console/business-hours", data={**hours, field: bad})
        assert resp.status in (404, 422), field
        assert f'id="e-{field}"' in await resp.text(), field
    resp = await hub.client.post("/console/business-hours", data=hours, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    api = "/api/v1/admin/business-hours"
    stored = (await (await hub.client.get(api, headers=hub.admin_headers)).json())["business_hours"]
    assert [(h["name"], h["timezone"], h["holidays"]) for h in stored] == [
        ("Office", "Europe/Lisbon", ["2026-12-25", "2027-01-01"])
    ]
    assert stored[0]["autoresponder"] == {"enabled": True, "text": "We are closed."}
    resp = await hub.client.post(
        f"/console/business-hours/{stored[0]['id']}/delete", data={"csrf_token": csrf}, allow_redirects=False
    )
    assert resp.status == 303
    assert (await (await hub.client.get(api, headers=hub.admin_headers)).json())["business_hours"] == []

    flow = '{"greeting": "Hi", "menu_button": "Menu", "options": [{"title": "Person", "handoff": true}]}'
    resp = await hub.client.post(
        "/console/bots", data={"csrf_token": csrf, "name": "Menu", "kind": "builtin", "flow": flow}
    )
    assert resp.status == 200, await resp.text()
    bot = (await (await hub.client.get("/api/v1/admin/bots", headers=hub.admin_headers)).json())["bots"][0]
    assert bot["kind"] == "builtin" and bot["channel_ids"] == []
    resp = await hub.client.post(
        f"/console/bots/{bot['id']}/channels",
        data={"csrf_token": csrf, "channel_ids": "acme-h"},
        allow_redirects=False,
    )
    assert resp.status == 303
    got = await (await hub.client.get(f"/api/v1/admin/bots/{bot['id']}", headers=hub.admin_headers)).json()
    assert got["channel_ids"] == ["acme-h"]
