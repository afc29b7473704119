"""The admin console in a real browser (Playwright driving Debian's chromium) against a real
``hub serve``: log in, enable a WhatsApp channel through the wizard, watch it wait for and receive
its first webhook, create an agent who then logs in through the API, permissions, CSRF, and axe
on every page. A screenshot of each page (wide and at a phone's width) is saved under
``$HUB_TEST_ARTIFACTS`` (default ``tmp/artifacts/console`` in the repository).

One browser serves the whole module; each test opens its own context (cookies) when it needs a
different user.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from e2e_support import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    ROOT,
    Api,
    HubProcess,
    ThreadedFakeGraph,
    phone,
    unique,
    wa_text_webhook,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

CHROMIUM = os.environ.get("HUB_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("HUB_TEST_ARTIFACTS") or ROOT / "tmp" / "artifacts") / "console"
PHONE_VIEWPORT = {"width": 390, "height": 844}
WIDE_VIEWPORT = {"width": 1280, "height": 900}

try:
    from playwright.async_api import Browser, Page, async_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    async_playwright = None  # type: ignore[assignment]


def _skip_reason() -> str | None:
    if async_playwright is None:
        return "playwright is not installed: `make install-test` (the test extra) installs it"
    if not Path(CHROMIUM).exists():
        return (
            f"no chromium at {CHROMIUM}: install Debian's (`apt-get install -y chromium`; never "
            "`playwright install`) or set HUB_TEST_CHROMIUM to a chromium binary"
        )
    return None


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    async with async_playwright() as pw:
        # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hub(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HubProcess]:
    """A hub of its own, so the console starts as a new admin finds it: no channel, one user."""
    if _skip_reason():
        pytest.skip(_skip_reason() or "")
    proc = HubProcess(tmp_path_factory.mktemp("console-hub"))
    try:
        await proc.bootstrap()
        yield proc
    finally:
        await proc.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def admin(browser: Browser, hub: HubProcess) -> AsyncIterator[Page]:
    """A browser page logged in as the admin (through the login form)."""
    context = await browser.new_context(base_url=hub.base_url, viewport=WIDE_VIEWPORT)
    page = await context.new_page()
    await login(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    try:
        yield page
    finally:
        await context.close()


async def login(page: Page, email: str, password: str) -> None:
    page.set_default_timeout(15_000)
    await page.goto("/console/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(re.compile(r".*/console/$"))


async def accept_invitation(browser: Browser, link: str, password: str) -> None:
    """The invited user opens the link in their own browser (a phone) and chooses a password."""
    context = await browser.new_context(viewport=PHONE_VIEWPORT)
    page = await context.new_page()
    try:
        await page.goto(link)
        await page.get_by_label("New password").fill(password)
        await page.get_by_label("Repeat it").fill(password)
        await page.get_by_role("button", name="Set password").click()
        await page.get_by_text("can now log in").wait_for()
    finally:
        await context.close()


async def shoot(page: Page, name: str) -> None:
    """Screenshots of the page as it is, wide and at a phone's width (the artifacts of this run)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size or WIDE_VIEWPORT
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    await page.set_viewport_size(PHONE_VIEWPORT)
    await page.screenshot(path=str(ARTIFACTS / f"{name}-phone.png"), full_page=True)
    # At a phone's width nothing may need sideways scrolling except inside a table's own scroller.
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{name}: the page is {overflow}px wider than a phone's screen"
    await page.set_viewport_size(size)


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as shown."""
    from axe_playwright_python.async_playwright import Axe

    results = await Axe().run(page)
    found = results.response.get("violations", [])
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in found
        if v.get("impact") in ("serious", "critical")
    ]


# ---- tests ----------------------------------------------------------------------------------------


async def test_login_refuses_a_wrong_password_then_lets_the_admin_in(
    browser: Browser, hub: HubProcess
) -> None:
    context = await browser.new_context(base_url=hub.base_url, viewport=WIDE_VIEWPORT)
    page = await context.new_page()
    try:
        await page.goto("/console/channels")
        assert "/console/login" in page.url  # not logged in: sent to the login form
        cookie = next(c for c in await context.cookies() if c["name"] == "hub_console")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/console"
        await page.get_by_label("Email").fill(ADMIN_EMAIL)
        await page.get_by_label("Password").fill("wrong password")
        await page.get_by_role("button", name="Log in").click()
        await page.get_by_role("alert").get_by_text("Email or password is wrong.").wait_for()
        await shoot(page, "login-refused")
        await page.get_by_label("Password").fill(ADMIN_PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        # Back where the admin was going.
        await page.wait_for_url(re.compile(r".*/console/channels$"))
        assert await page.get_by_role("heading", name="Channels").is_visible()
        await page.get_by_role("button", name="Log out").click()
        await page.wait_for_url(re.compile(r".*/console/login$"))
        await page.goto("/console/channels")
        assert "/console/login" in page.url  # logged out: the session's token is revoked
    finally:
        await context.close()


async def test_whatsapp_wizard_validates_then_enables_and_sees_the_first_webhook(
    admin: Page, hub: HubProcess, graph: ThreadedFakeGraph, http: aiohttp.ClientSession
) -> None:
    page = admin
    app_secret = "s3cret-" + secrets.token_hex(8)
    access_token = "EAAG" + secrets.token_hex(12)
    phone_number_id = unique("pn")
    verify_token = unique("verify-")

    await page.goto("/console/")
    await page.get_by_role("link", name="Channels", exact=True).click()
    await page.get_by_role("link", name="Add a channel").click()
    await page.get_by_role("link", name="whatsapp", exact=True).click()
    await shoot(page, "channel-wizard")

    # Fields come from the plugin's Settings model: secrets are password inputs.
    assert await page.get_by_label("Access token").get_attribute("type") == "password"
    assert await page.get_by_label("App secret").get_attribute("type") == "password"
    await page.get_by_label(re.compile("^Name")).fill("Support")
    await page.get_by_label("Phone number id").fill(phone_number_id)
    await page.get_by_label("Access token").fill(access_token)
    await page.get_by_label("App secret").fill(app_secret)
    await page.get_by_label("Verify token").fill(verify_token)
    await page.get_by_label("Api base url").fill(graph.base_url)
    await page.get_by_label("Messages per second").fill("5000")  # over the model's 1000
    await page.get_by_role("button", name="Save and check").click()

    error = page.locator("#e-messages_per_second")
    await error.wait_for()
    assert "less than or equal to 1000" in (await error.inner_text())
    assert await page.get_by_label("Messages per second").get_attribute("aria-invalid") == "true"
    # What was typed stays, except the secrets, which are never sent back to the browser.
    assert await page.get_by_label("Phone number id").input_value() == phone_number_id
    assert await page.get_by_label("App secret").input_value() == ""
    assert app_secret not in await page.content() and access_token not in await page.content()
    await shoot(page, "channel-wizard-invalid")

    await page.get_by_label("Messages per second").fill("80")
    await page.get_by_label("Access token").fill(access_token)
    await page.get_by_label("App secret").fill(app_secret)
    await page.get_by_role("button", name="Save and check").click()
    await page.wait_for_url(re.compile(r".*/console/channels/[^/]+\?created=1$"))
    channel_id = page.url.rsplit("/", 1)[-1].split("?")[0]

    # The live credentials check against the (fake) Graph API says ok.
    health = page.locator("#health .state")
    await wait_until(lambda: health.inner_text(), what="a health state")
    await page.locator("#health .state-ok").wait_for(timeout=15_000)
    # The webhook URL and verify token to paste into Meta's dashboard, each with a copy button.
    url_box = page.get_by_label("Webhook url")
    assert await url_box.input_value() == f"{hub.base_url}/webhooks/{channel_id}"
    assert await page.get_by_label("Verify token").input_value() == verify_token
    assert await page.locator("button[data-copy='setup-webhook_url']").is_visible()
    assert app_secret not in await page.content() and access_token not in await page.content()
    waiting = page.locator("#first")
    assert "Waiting for the provider's first event" in await waiting.inner_text()
    await shoot(page, "channel-waiting")

    # The provider's first event: a signed webhook, as Meta sends it.
    payload, _ = wa_text_webhook(phone_number_id, phone(), "hello from the wizard test")
    api = Api(http, hub.base_url, hub.token)
    resp = await api.webhook(channel_id, payload, app_secret)
    assert resp.status == 200, resp.text
    # The page notices by itself (htmx polling), no reload.
    await page.get_by_text("The first event arrived at").wait_for(timeout=15_000)
    await shoot(page, "channel-first-event")

    # Deliveries: the stored delivery with its state, and a replay that keeps one message.
    await page.get_by_role("link", name="See the deliveries").click()
    row = page.locator("tbody tr").first
    await row.locator(".state-done").wait_for()
    await shoot(page, "channel-deliveries")
    await row.get_by_role("button", name=re.compile("Replay delivery")).click()
    await page.locator("tbody tr .state-done").first.wait_for()
    conversations = (await api.ok("GET", f"/api/v1/conversations?channel_id={channel_id}"))["conversations"]
    assert len(conversations) == 1
    messages = (await api.ok("GET", f"/api/v1/conversations/{conversations[0]['id']}/messages"))["messages"]
    assert [m["text"] for m in messages] == ["hello from the wizard test"]

    # Disable and enable again from the channel page; the API sees each state.
    await page.goto(f"/console/channels/{channel_id}")
    await page.get_by_role("button", name="Disable").click()
    await page.locator("#health .state-paused").wait_for()
    assert (await api.ok("GET", f"/api/v1/admin/channels/{channel_id}"))["enabled"] is False
    await page.locator("main").get_by_role("button", name="Enable").first.click()
    await page.get_by_role("button", name="Disable").wait_for()
    assert (await api.ok("GET", f"/api/v1/admin/channels/{channel_id}"))["enabled"] is True


async def test_admin_creates_an_agent_who_logs_in_through_the_api(
    admin: Page, browser: Browser, hub: HubProcess, http: aiohttp.ClientSession
) -> None:
    email = unique("agent-") + "@example.com"
    await admin.goto("/console/users")
    await admin.get_by_label("Email").fill(email)
    await admin.get_by_label("Name", exact=True).fill("Agent Smith")
    await admin.get_by_label("Role", exact=True).select_option("agent")
    await admin.get_by_role("button", name="Create and invite").click()
    link = await admin.get_by_label("Set-password link").input_value()
    assert "/console/set-password?token=inv_" in link
    await shoot(admin, "users")

    await accept_invitation(browser, link, "agent-password-1")

    async with http.post(
        f"{hub.base_url}/api/v1/auth/login", json={"email": email, "password": "agent-password-1"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    assert body["user"]["role"] == "agent" and body["token"]


async def test_an_agent_sees_no_admin_page_and_is_refused_by_url(
    admin: Page, browser: Browser, hub: HubProcess, http: aiohttp.ClientSession
) -> None:
    email = unique("agent-") + "@example.com"
    api = Api(http, hub.base_url, hub.token)
    created = await api.ok(
        "POST", "/api/v1/admin/users", expect=201, json_body={"email": email, "role": "agent"}
    )
    await api.ok(
        "POST",
        "/api/v1/auth/set-password",
        json_body={"token": created["invitation"]["token"], "password": "agent-password-2"},
    )
    context = await browser.new_context(base_url=hub.base_url, viewport=WIDE_VIEWPORT)
    page = await context.new_page()
    try:
        await login(page, email, "agent-password-2")
        nav = page.get_by_role("navigation", name="Console")
        assert await nav.get_by_role("link").all_inner_texts() == ["Overview"]
        assert "has no console pages" in await page.locator("main").inner_text()
        await shoot(page, "agent-overview")
        for path in (
            "/console/channels",
            "/console/channels/new/whatsapp",
            "/console/users",
            "/console/labels",
            "/console/quick-replies",
            "/console/macros",
            "/console/attributes",
            "/console/notifications",
            "/console/automations",
            "/console/automations/new",
            "/console/automations/runs",
            "/console/business-hours",
            "/console/bots",
        ):
            resp = await page.goto(path)
            assert resp is not None and resp.status == 403, path
            assert await page.get_by_role("heading", name="You may not do this").is_visible()
        await shoot(page, "agent-forbidden")
        # A form posted by hand (with a valid CSRF token) is refused by the service too.
        token = await page.locator("input[name=csrf_token]").first.input_value()
        resp2 = await page.request.post(
            "/console/users", form={"csrf_token": token, "email": "x@example.com", "role": "agent"}
        )
        assert resp2.status == 403
        for path, form in (
            ("/console/labels", {"name": "by-an-agent"}),
            ("/console/quick-replies", {"code": "agent", "text": "hi"}),
            ("/console/attributes", {"applies_to": "contact", "key": "agent_x", "type": "text", "name": "X"}),
            ("/console/notifications", {"mention.push": "on"}),
            (
                "/console/automations",
                {"name": "x", "trigger": '{"type": "message_created"}', "actions": "[]"},
            ),
            ("/console/automations-try/backtest", {"name": "x", "trigger": "{}", "actions": "[]"}),
            ("/console/business-hours", {"name": "x", "scope_type": "team", "scope_id": "t"}),
            ("/console/bots", {"name": "x", "kind": "webhook", "webhook_url": "https://x.example/"}),
        ):
            refused = await page.request.post(path, form={"csrf_token": token, **form})
            assert refused.status == 403, path
    finally:
        await context.close()


async def test_a_form_without_the_csrf_token_is_refused(admin: Page, hub: HubProcess) -> None:
    await admin.goto("/console/roles")
    # The admin's own cookies, but no token (as a forged cross-site form would send them).
    resp = await admin.request.post("/console/roles", form={"name": "forged", "permissions": "plugins.read"})
    assert resp.status == 403
    assert "did not come from the console" in await resp.text()
    resp = await admin.request.post(
        "/console/roles", form={"name": "forged"}, headers={"X-CSRF-Token": "not-the-token"}
    )
    assert resp.status == 403
    await admin.reload()
    assert "forged" not in await admin.locator("main").inner_text()
    # With the page's token the same form works.
    token = await admin.locator("input[name=csrf_token]").first.input_value()
    resp = await admin.request.post(
        "/console/roles", form={"csrf_token": token, "name": "readers", "permissions": "plugins.read"}
    )
    assert resp.ok
    await admin.reload()
    assert "readers" in await admin.locator("main").inner_text()


# ---- the workspace configuration pages -------------------------------------------------------------


def section(page: Page, heading: str) -> Any:
    """The card (form) under a heading."""
    return page.locator("section.card").filter(has=page.get_by_role("heading", name=heading, exact=True))


def card(page: Page, title: str) -> Any:
    return page.locator("li.card").filter(has=page.locator(".card-title", has_text=title))


async def test_labels_are_defined_renamed_recoloured_and_deleted_as_the_app_reads_them(
    admin: Page, hub: HubProcess, http: aiohttp.ClientSession
) -> None:
    api = Api(http, hub.base_url, hub.token)
    name = unique("VIP-")
    await admin.goto("/console/labels")
    new = section(admin, "Define a label")
    await new.get_by_label("Name").fill(name)
    await new.get_by_label("Colour").fill("#aa3300")
    await new.get_by_label("Description").fill("big spenders")
    await new.get_by_role("button", name="Define label").click()
    await card(admin, name).wait_for()
    labels = (await api.ok("GET", "/api/v1/labels"))["labels"]
    made = next(lab for lab in labels if lab["name"] == name)
    assert (made["colour"], made["description"]) == ("#aa3300", "big spenders")
    await shoot(admin, "labels")

    # The same name in another case: the service's conflict, beside the name; nothing stored.
    await new.get_by_label("Name").fill(name.upper())
    await new.get_by_role("button", name="Define label").click()
    error = section(admin, "Define a label").locator("#e-name")
    assert "already exists" in await error.inner_text()
    assert len((await api.ok("GET", "/api/v1/labels"))["labels"]) == len(labels)
    await shoot(admin, "labels-conflict")

    # Rename and recolour: the same label (id), its description cleared on purpose.
    row = card(admin, name)
    await row.get_by_label("Name").fill(name + "-gold")
    await row.get_by_label("Colour").fill("#00aa55")
    await row.get_by_label("Description").fill("")
    await row.get_by_role("button", name=f"Save {name}").click()
    await card(admin, name + "-gold").wait_for()
    after = next(lab for lab in (await api.ok("GET", "/api/v1/labels"))["labels"] if lab["id"] == made["id"])
    assert (after["name"], after["colour"], after["description"]) == (name + "-gold", "#00aa55", None)

    # A blank name is the request model's error, beside the field of that label's form.
    row = card(admin, name + "-gold")
    await row.get_by_label("Name").fill("   ")
    await row.get_by_role("button", name=f"Save {name}-gold").click()
    assert await card(admin, name + "-gold").locator(".error").count() == 1

    admin.once("dialog", lambda dialog: dialog.accept())
    await card(admin, name + "-gold").get_by_role("button", name=f"Delete {name}-gold").click()
    await admin.get_by_role("heading", name="Define a label").wait_for()
    assert await card(admin, name + "-gold").count() == 0
    assert made["id"] not in {lab["id"] for lab in (await api.ok("GET", "/api/v1/labels"))["labels"]}


async def test_quick_replies_preview_their_placeholders_and_refuse_unknown_ones(
    admin: Page, hub: HubProcess, http: aiohttp.ClientSession
) -> None:
    api = Api(http, hub.base_url, hub.token)
    code = unique("hi")
    await admin.goto("/console/quick-replies")
    new = section(admin, "Add a quick reply")
    await new.get_by_label("Code").fill(code)
    text = new.get_by_label("Text")
    await text.fill(
        "Hello {{contact.name}}, order {{conversation.custom_attributes.order_id}}. {{agent.email}}"
    )
    # The preview follows the typing (htmx), with the sample contact and the admin as the agent.
    rendered = admin.locator("#preview-new .rendered")
    await rendered.wait_for()
    assert await rendered.inner_text() == f"Hello Ana Silva, order A-1042. {ADMIN_EMAIL}"
    await text.fill("Hello {{contact.age}}")
    await admin.locator("#preview-new .error").get_by_text("unknown placeholder {{contact.age}}").wait_for()
    await shoot(admin, "quick-reply-preview")
    await new.get_by_role("button", name="Add quick reply").click()
    assert "unknown placeholder" in await section(admin, "Add a quick reply").locator("#e-text").inner_text()
    assert code not in {q["code"] for q in (await api.ok("GET", "/api/v1/quick-replies"))["quick_replies"]}

    new = section(admin, "Add a quick reply")
    await new.get_by_label("Text").fill("Thanks {{contact.name}}!")
    await new.get_by_role("button", name="Add quick reply").click()
    row = card(admin, "/" + code)
    assert await row.locator(".rendered").inner_text() == "Thanks Ana Silva!"
    stored = next(
        q for q in (await api.ok("GET", "/api/v1/quick-replies"))["quick_replies"] if q["code"] == code
    )
    assert stored["text"] == "Thanks {{contact.name}}!"

    await row.get_by_text(f"Edit /{code}").click()
    await row.get_by_label("Text").fill("Bye {{contact.name}}")
    await row.get_by_role("button", name=f"Save /{code}").click()
    assert await card(admin, "/" + code).locator(".rendered").inner_text() == "Bye Ana Silva"
    got = await api.ok("GET", "/api/v1/quick-replies", params={"q": code})
    assert [q["text"] for q in got["quick_replies"]] == ["Bye {{contact.name}}"]
    await shoot(admin, "quick-replies")


async def test_a_macro_is_an_ordered_action_list_shared_or_personal(
    admin: Page, hub: HubProcess, http: aiohttp.ClientSession
) -> None:
    api = Api(http, hub.base_url, hub.token)
    label = unique("macro-label-")
    await api.ok("POST", "/api/v1/admin/labels", expect=201, json_body={"name": label})
    name = unique("Close as VIP ")
    await admin.goto("/console/macros")
    form = section(admin, "Create a macro")
    await form.get_by_label("Name").fill(name)
    await form.get_by_role("radio", name=re.compile("Shared")).check()
    # Typed in one order, numbered to run in the other.
    await form.get_by_label("Action 1", exact=True).select_option("set_status")
    await form.get_by_label("Value of action 1", exact=True).fill("resolved")
    await form.get_by_label("Step of action 1").fill("2")
    await form.get_by_label("Action 2", exact=True).select_option("add_label")
    await form.get_by_label("Value of action 2", exact=True).fill(label)
    await form.get_by_label("Step of action 2").fill("1")
    await form.get_by_label("Action 3", exact=True).select_option("snooze")
    await form.get_by_label("Value of action 3", exact=True).fill("soon")
    await form.get_by_role("button", name="Create macro").click()
    # The request model refuses the third row; the error stands beside it, nothing is stored.
    error = section(admin, "Create a macro").locator("#e-a-2")
    await error.wait_for()
    assert "integer" in await error.inner_text()
    assert name not in {m["name"] for m in (await api.ok("GET", "/api/v1/macros"))["macros"]}
    await shoot(admin, "macro-invalid")

    form = section(admin, "Create a macro")
    assert await form.get_by_label("Value of action 1", exact=True).input_value() == label  # reordered
    await form.get_by_label("Action 3", exact=True).select_option("")
    await form.get_by_role("button", name="Create macro").click()
    await card(admin, name).wait_for()
    macro = next(m for m in (await api.ok("GET", "/api/v1/macros"))["macros"] if m["name"] == name)
    assert macro["visibility"] == "shared"
    assert macro["actions"] == [
        {"type": "add_label", "label": label},
        {"type": "set_status", "status": "resolved"},
    ]

    # Edit: made personal, a third action appended; the editor shows the stored order.
    await card(admin, name).get_by_role("link", name=f"Edit {name}").click()
    form = section(admin, f"Edit the macro {name}")
    assert await form.get_by_label("Value of action 2", exact=True).input_value() == "resolved"
    await form.get_by_role("radio", name=re.compile("Personal")).check()
    await form.get_by_label("Action 3", exact=True).select_option("assign_agent")
    await form.get_by_label("Value of action 3", exact=True).fill(ADMIN_EMAIL)
    await form.get_by_role("button", name="Save macro").click()
    await card(admin, name).wait_for()
    macro = await api.ok("GET", f"/api/v1/macros/{macro['id']}")
    assert macro["visibility"] == "personal"
    admin_id = (await api.ok("GET", "/api/v1/me"))["id"]
    assert macro["actions"][2] == {"type": "assign_agent", "user_id": admin_id}
    await shoot(admin, "macros")


async def test_custom_attributes_are_defined_with_their_constraints_and_changed(
    admin: Page, hub: HubProcess, http: aiohttp.ClientSession
) -> None:
    api = Api(http, hub.base_url, hub.token)
    key = unique("tier_")
    await admin.goto("/console/attributes")
    form = section(admin, "Define an attribute")
    await form.get_by_label("Of", exact=True).select_option("conversation")
    await form.get_by_label("Key").fill("Not A Key")
    await form.get_by_label("Type").select_option("list")
    await form.get_by_label("Name").fill("Tier")
    await form.get_by_label(re.compile("^Options")).fill("gold\nsilver")
    await form.get_by_role("button", name="Define attribute").click()
    assert "pattern" in await section(admin, "Define an attribute").locator("#e-key").inner_text()

    form = section(admin, "Define an attribute")
    await form.get_by_label("Key").fill(key)
    await form.get_by_label("Type").select_option("number")
    await form.get_by_label(re.compile("^Minimum")).fill("ten")
    await form.get_by_role("button", name="Define attribute").click()
    assert await section(admin, "Define an attribute").locator("#e-min").count() == 1
    await shoot(admin, "attributes-invalid")

    form = section(admin, "Define an attribute")
    await form.get_by_label("Type").select_option("list")
    await form.get_by_label(re.compile("^Minimum")).fill("")
    await form.get_by_role("button", name="Define attribute").click()
    await card(admin, "Tier").filter(has_text=key).wait_for()
    defs = (await api.ok("GET", "/api/v1/custom-attributes"))["conversation"]
    made = next(d for d in defs if d["key"] == key)
    assert (made["type"], made["options"], made["required"]) == ("list", ["gold", "silver"], False)

    row = card(admin, "Tier").filter(has_text=key)
    await row.get_by_text("Edit Tier").click()
    await row.get_by_label("Name").fill("Customer tier")
    await row.get_by_label(re.compile("^Options")).fill("gold\nsilver\nbronze")
    await row.get_by_role("checkbox", name=re.compile("Required")).check()
    await row.get_by_role("button", name="Save Tier").click()
    await card(admin, "Customer tier").filter(has_text=key).wait_for()
    defs = (await api.ok("GET", "/api/v1/custom-attributes"))["conversation"]
    changed = next(d for d in defs if d["id"] == made["id"])
    assert (changed["name"], changed["options"], changed["required"]) == (
        "Customer tier",
        ["gold", "silver", "bronze"],
        True,
    )
    await shoot(admin, "attributes")
    admin.once("dialog", lambda dialog: dialog.accept())
    await (
        card(admin, "Customer tier")
        .filter(has_text=key)
        .get_by_role("button", name="Delete Customer tier")
        .click()
    )
    await admin.get_by_role("heading", name="Define an attribute").wait_for()
    defs = (await api.ok("GET", "/api/v1/custom-attributes"))["conversation"]
    assert made["id"] not in {d["id"] for d in defs}


async def test_notification_defaults_are_a_table_of_choices(
    admin: Page, hub: HubProcess, http: aiohttp.ClientSession
) -> None:
    api = Api(http, hub.base_url, hub.token)
    before = (await api.ok("GET", "/api/v1/admin/notification-defaults"))["preferences"]
    await admin.goto("/console/notifications")
    mention_push = admin.get_by_label("mention by push")
    created_email = admin.get_by_label("conversation created by email")
    assert await mention_push.is_checked() == before["mention"]["push"]
    await mention_push.set_checked(not before["mention"]["push"])
    await created_email.set_checked(not before["conversation_created"]["email"])
    await admin.get_by_role("button", name="Save defaults").click()
    await admin.get_by_role("status").get_by_text("The defaults are saved.").wait_for()
    after = (await api.ok("GET", "/api/v1/admin/notification-defaults"))["preferences"]
    assert after["mention"]["push"] is not before["mention"]["push"]
    assert after["conversation_created"]["email"] is not before["conversation_created"]["email"]
    assert after["assigned"] == before["assigned"]  # the boxes left alone stay as they were
    await shoot(admin, "notifications")
    await api.ok("PATCH", "/api/v1/admin/notification-defaults", json_body={"preferences": before})


# ---- automations and bots ------------------------------------------------------------------------


async def test_a_rule_made_in_the_console_is_the_apis_and_its_backtest_reports(
    admin: Page, hub: HubProcess, http: aiohttp.ClientSession
) -> None:
    api = Api(http, hub.base_url, hub.token)
    name = unique("refunds-")
    await admin.goto("/console/automations/new")
    # The model's refusal beside the field: no action.
    await admin.get_by_label("Name").fill(name)
    await admin.get_by_label("Actions (JSON list)").fill("[]")
    await admin.get_by_role("button", name="Create the rule").click()
    assert "at least 1 item" in await admin.locator("#e-actions").inner_text()
    assert name not in {r["name"] for r in (await api.ok("GET", "/api/v1/admin/automations/rules"))["rules"]}

    await admin.get_by_label("Trigger (JSON)").fill('{"type": "message_created", "direction": "inbound"}')
    await admin.get_by_label("Conditions (JSON)").fill(
        '{"all": [{"field": "message.text", "op": "contains", "value": "refund"}]}'
    )
    await admin.get_by_label("Actions (JSON list)").fill(f'[{{"type": "add_label", "label": "{name}"}}]')
    await admin.get_by_role("button", name="Create the rule").click()
    await admin.wait_for_url(re.compile(r".*/console/automations/ar_[^/]+$"))
    rules = (await api.ok("GET", "/api/v1/admin/automations/rules"))["rules"]
    made = next(r for r in rules if r["name"] == name)
    assert made["definition"]["actions"] == [{"type": "add_label", "label": name}]
    assert made["definition"]["trigger"]["direction"] == "inbound" and made["mode"] == "live"
    assert admin.url.endswith(made["id"])

    # A backtest of the rule as typed: the report, from the service; nothing is done.
    await admin.get_by_label("Days of history (backtest)").fill("3")
    await admin.get_by_role("button", name="Backtest").click()
    report = admin.locator("section.report")
    await report.get_by_role("heading", name="Backtest report").wait_for()
    facts = await report.inner_text()
    assert re.search(r"Events examined\s+\d+", facts) and re.search(r"Matches\s+\d+", facts)
    await shoot(admin, "automation-backtest")
    # The list: shadow it from there, and its run log page answers with its filter.
    await admin.goto("/console/automations")
    await admin.get_by_role("button", name=f"Shadow {name}").click()
    await admin.get_by_role("button", name=f"Run {name} live").wait_for()
    after = next(
        r for r in (await api.ok("GET", "/api/v1/admin/automations/rules"))["rules"] if r["id"] == made["id"]
    )
    assert after["mode"] == "shadow"
    await admin.get_by_role("link", name=f"Runs of {name}").click()
    await admin.get_by_role("heading", name="Run log").wait_for()
    assert await admin.get_by_label("Rule").input_value() == made["id"]


async def test_a_bot_created_in_the_console_shows_its_secret_once(
    admin: Page, hub: HubProcess, http: aiohttp.ClientSession
) -> None:
    api = Api(http, hub.base_url, hub.token)
    name = unique("Helper-")
    await admin.goto("/console/bots")
    new = section(admin, "Create a bot")
    await new.get_by_label("Name").fill(name)
    await new.get_by_label("Webhook URL (webhook bots)").fill("https://bot.example/hook")
    await new.get_by_role("button", name="Create bot").click()
    creds = admin.get_by_role("heading", name=f"Credentials of {name}")
    await creds.wait_for()
    secret = await admin.get_by_label("Signing secret").input_value()
    token = await admin.get_by_label("API token").input_value()
    assert len(secret) >= 32 and len(token) >= 20
    await shoot(admin, "bot-created")
    bot = next(b for b in (await api.ok("GET", "/api/v1/admin/bots"))["bots"] if b["name"] == name)
    assert bot["kind"] == "webhook" and bot["webhook_url"] == "https://bot.example/hook"
    # Its token works on the API (it is the bot's), and the page never shows it again.
    async with http.get(
        f"{hub.base_url}/api/v1/conversations", headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        assert resp.status != 401
    await admin.goto("/console/bots")
    html = await admin.content()
    assert name in html and secret not in html and token not in html
    # Disable, rotate (new credentials, shown once), delete: the API sees each.
    await admin.get_by_role("button", name=f"Disable {name}").click()
    await admin.get_by_role("button", name=f"Enable {name}").wait_for()
    assert (await api.ok("GET", f"/api/v1/admin/bots/{bot['id']}"))["enabled"] is False
    admin.once("dialog", lambda dialog: dialog.accept())
    await admin.get_by_role("button", name=f"Rotate credentials of {name}").click()
    await creds.wait_for()
    assert await admin.get_by_label("Signing secret").input_value() not in ("", secret)
    await admin.goto("/console/bots")
    admin.once("dialog", lambda dialog: dialog.accept())
    await admin.get_by_role("button", name=f"Delete {name}").click()
    await admin.get_by_role("heading", name="Create a bot").wait_for()
    assert bot["id"] not in {b["id"] for b in (await api.ok("GET", "/api/v1/admin/bots"))["bots"]}


async def test_every_page_passes_axe_and_fits_a_phone(admin: Page, hub: HubProcess) -> None:
    await admin.goto("/console/channels")
    channel_links = admin.locator(".cards .card-title a")
    channel = (await channel_links.first.get_attribute("href")) if await channel_links.count() else None
    pages = {
        "overview": "/console/",
        "channels": "/console/channels",
        "channel-types": "/console/channels/new",
        "users": "/console/users",
        "roles": "/console/roles",
        "teams": "/console/teams",
        "availability": "/console/availability",
        "plugins": "/console/plugins",
        "labels": "/console/labels",
        "quick-replies": "/console/quick-replies",
        "macros": "/console/macros",
        "attributes": "/console/attributes",
        "notifications": "/console/notifications",
        "automations": "/console/automations",
        "automation-new": "/console/automations/new",
        "automation-runs": "/console/automations/runs",
        "business-hours": "/console/business-hours",
        "bots": "/console/bots",
    }
    await admin.goto("/console/automations")
    rule_links = admin.locator(".rule-card .card-title a")
    if await rule_links.count():
        pages["automation-edit"] = await rule_links.first.get_attribute("href") or "/console/automations"
    await admin.goto("/console/macros")
    edit_links = admin.get_by_role("link", name=re.compile("^Edit "))
    if await edit_links.count():
        pages["macro-edit"] = await edit_links.first.get_attribute("href") or "/console/macros"
    if channel:
        pages |= {
            "channel": channel,
            "channel-settings": channel + "/settings",
            "channel-deliveries": channel + "/deliveries",
        }
    problems = {}
    for name, path in pages.items():
        resp = await admin.goto(path)
        assert resp is not None and resp.status == 200, (path, resp and resp.status)
        await shoot(admin, f"page-{name}")
        found = await axe_violations(admin)
        if found:
            problems[path] = found
    context = admin.context
    login_page = await context.browser.new_page() if context.browser else None  # type: ignore[union-attr]
    if login_page is not None:
        try:
            await login_page.goto(f"{hub.base_url}/console/login")
            await shoot(login_page, "page-login")
            if found := await axe_violations(login_page):
                problems["/console/login"] = found
        finally:
            await login_page.close()
    assert problems == {}, problems


async def test_a_new_hub_is_set_up_from_the_console_alone(browser: Browser, tmp_path: Path) -> None:
    """`make run` on a fresh machine: no user exists; the link `hub serve` prints opens the
    console's first-run page, where the first administrator is created and logged in."""
    fresh = HubProcess(tmp_path / "fresh")
    try:
        await fresh.start()
        match = await wait_until(
            lambda: re.search(r"(http://\S+/console/setup\?token=\S+)", fresh.log_tail(50)),
            what="the first-run link in the log",
        )
        link = match.group(1)
        context = await browser.new_context(base_url=fresh.base_url, viewport=WIDE_VIEWPORT)
        page = await context.new_page()
        page.set_default_timeout(15_000)
        try:
            resp = await page.goto("/console/setup?token=guessed")
            assert resp is not None and resp.status == 403  # the token is the gate
            await page.goto("/console/login")
            assert "No administrator yet" in await page.locator("main").inner_text()
            await page.goto(link)
            await shoot(page, "page-setup")
            assert await axe_violations(page) == []
            await page.get_by_label("Email").fill("first@example.com")
            await page.get_by_label("Password", exact=False).first.fill("first-admin-pw")
            await page.get_by_label("Repeat the password").fill("first-admin-pw")
            await page.get_by_role("button", name="Create and log in").click()
            await page.wait_for_url(re.compile(r".*/console/channels/new$"))
            assert "first@example.com (administrator)" in await page.locator("header").inner_text()
            # The link is spent: the hub has an administrator now.
            await page.goto(link)
            assert page.url.endswith("/console/login") or page.url.endswith("/console/")
        finally:
            await context.close()
    finally:
        await fresh.close()


async def test_done_when_a_new_admin_runs_the_organisation_from_the_console_alone(
    browser: Browser, tmp_path: Path, graph: ThreadedFakeGraph, http: aiohttp.ClientSession
) -> None:
    """Issue #22's "done when", in one story on a fresh hub: from the first-run link, a new admin
    enables a WhatsApp channel, sees it wait for and receive its first message, creates an agent
    who then logs in through the API, and defines a label that the agent's app reads."""
    fresh = HubProcess(tmp_path / "done")
    admin_email, admin_password = "owner@example.com", "owner-password-1"
    phone_number_id, app_secret = unique("pn"), "s3cret-" + secrets.token_hex(8)
    try:
        await fresh.start()
        match = await wait_until(
            lambda: re.search(r"(http://\S+/console/setup\?token=\S+)", fresh.log_tail(50)),
            what="the first-run link in the log",
        )
        context = await browser.new_context(base_url=fresh.base_url, viewport=PHONE_VIEWPORT)
        page = await context.new_page()
        page.set_default_timeout(15_000)
        try:
            # 1. The first administrator, from the link `hub serve` printed.
            await page.goto(match.group(1))
            await page.get_by_label("Email").fill(admin_email)
            await page.get_by_label("Password", exact=False).first.fill(admin_password)
            await page.get_by_label("Repeat the password").fill(admin_password)
            await page.get_by_role("button", name="Create and log in").click()
            await page.wait_for_url(re.compile(r".*/console/channels/new$"))

            # 2. A WhatsApp channel through the wizard (the fake Graph API answers its check).
            await page.get_by_role("link", name="whatsapp", exact=True).click()
            await page.get_by_label(re.compile("^Name")).fill("Shop WhatsApp")
            await page.get_by_label("Phone number id").fill(phone_number_id)
            await page.get_by_label("Access token").fill("EAAG" + secrets.token_hex(12))
            await page.get_by_label("App secret").fill(app_secret)
            await page.get_by_label("Verify token").fill(unique("verify-"))
            await page.get_by_label("Api base url").fill(graph.base_url)
            await page.get_by_role("button", name="Save and check").click()
            await page.wait_for_url(re.compile(r".*/console/channels/[^/]+\?created=1$"))
            channel_id = page.url.rsplit("/", 1)[-1].split("?")[0]
            await page.locator("#health .state-ok").wait_for()
            assert "Waiting for the provider's first event" in await page.locator("#first").inner_text()
            await shoot(page, "done-waiting")

            # 3. The first message arrives (signed, as Meta sends it); the page sees it unaided.
            payload, _ = wa_text_webhook(phone_number_id, phone(), "is the shop open?")
            hook = await Api(http, fresh.base_url).webhook(channel_id, payload, app_secret)
            assert hook.status == 200, hook.text
            await page.get_by_text("The first event arrived at").wait_for()
            await shoot(page, "done-first-message")
            admin_api = Api(http, fresh.base_url, await fresh.create_token(admin_email))
            # The admin API lists the same delivery the console shows, and replays it alike.
            listed = await admin_api.ok("GET", f"/api/v1/admin/channels/{channel_id}/deliveries")
            assert [d["state"] for d in listed["deliveries"]] == ["done"] and listed["next_before"] is None
            await page.get_by_role("link", name="See the deliveries").click()
            delivery_id = listed["deliveries"][0]["id"]
            assert await page.locator(f"#d-{delivery_id} .state-done").is_visible()
            replayed = await admin_api.ok(
                "POST", f"/api/v1/admin/channels/{channel_id}/deliveries/{delivery_id}/replay"
            )
            assert replayed["id"] == delivery_id and replayed["state"] == "done"
            missing = await admin_api.post(f"/api/v1/admin/channels/{channel_id}/deliveries/999999999/replay")
            assert missing.status == 404 and missing.json["error"]["code"] == "not_found"
            bad = await admin_api.get(f"/api/v1/admin/channels/{channel_id}/deliveries?state=lost")
            assert bad.status == 400
            convs = (await admin_api.ok("GET", f"/api/v1/conversations?channel_id={channel_id}"))[
                "conversations"
            ]
            msgs = (await admin_api.ok("GET", f"/api/v1/conversations/{convs[0]['id']}/messages"))["messages"]
            assert [m["text"] for m in msgs] == ["is the shop open?"]  # replayed, still one

            # 4. An agent, invited from the users page, sets a password and logs in through the API.
            await page.get_by_role("link", name="Users").click()
            await page.get_by_label("Email").fill("agent@example.com")
            await page.get_by_label("Role", exact=True).select_option("agent")
            await page.get_by_role("button", name="Create and invite").click()
            link = await page.get_by_label("Set-password link").input_value()
            await accept_invitation(browser, link, "agent-password-9")
            login = await Api(http, fresh.base_url).post(
                "/api/v1/auth/login",
                json_body={"email": "agent@example.com", "password": "agent-password-9"},
                auth=False,
            )
            assert login.status == 200, login.text
            agent_api = Api(http, fresh.base_url, login.json["token"])
            refused = await agent_api.get(f"/api/v1/admin/channels/{channel_id}/deliveries")
            assert refused.status == 403  # deliveries are the admins'
            before = await agent_api.ok("GET", "/api/v1/config")

            # 5. A label, defined on the labels page, which the agent's app then reads.
            await page.get_by_role("link", name="Labels").click()
            new = section(page, "Define a label")
            await new.get_by_label("Name").fill("Wholesale")
            await new.get_by_label("Colour").fill("#7a4f00")
            await new.get_by_role("button", name="Define label").click()
            await card(page, "Wholesale").wait_for()
            await shoot(page, "done-label")
            config = await agent_api.ok("GET", "/api/v1/config")
            assert [(lab["name"], lab["colour"]) for lab in config["labels"]["labels"]] == [
                ("Wholesale", "#7a4f00")
            ]
            assert config["etags"]["labels"] != before["etags"]["labels"]  # the app's cache is stale
            labels = await agent_api.ok("GET", "/api/v1/labels")
            assert labels == config["labels"]
        finally:
            await context.close()
    finally:
        await fresh.close()
