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

    # The agent opens the link in their own browser and chooses a password.
    context = await browser.new_context(viewport=PHONE_VIEWPORT)
    page = await context.new_page()
    try:
        await page.goto(link)
        await page.get_by_label("New password").fill("agent-password-1")
        await page.get_by_label("Repeat it").fill("agent-password-1")
        await page.get_by_role("button", name="Set password").click()
        await page.get_by_text("can now log in").wait_for()
    finally:
        await context.close()

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
        for path in ("/console/channels", "/console/channels/new/whatsapp", "/console/users"):
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
    }
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
