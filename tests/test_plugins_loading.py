"""The plugin loader: discovery through real entry points, isolation of broken plugins, strict
mode, the disable list, undeclared hooks, duplicate and invalid channel types."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ConfigDict

import hub
from hub import hookimpl
from hub.channel import Capabilities, Channel, ChannelRegistrar, ChannelSettings
from hub.errors import PluginLoadError
from hub.manifest import PLUGIN_API_VERSION, PluginDeprecationWarning
from hub.models import Event, utcnow
from hub.plugins import load_plugins
from hub.testing.fake_channel import FakeChannel, FakePlugin
from hub.testing.pytest_plugin import HubPlugins

BUILT_INS = {"whatsapp": "hub-whatsapp", "facebook": "hub-facebook", "email": "hub-email"}
Load = Callable[..., HubPlugins]
CHECKOUT = str(Path(hub.__file__).resolve().parents[1])


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HUB_STRICT_PLUGINS", "HUB_DISABLE_PLUGINS", "HUB_TRACE_HOOKS"):
        monkeypatch.delenv(name, raising=False)


class Raising:
    """A plugin whose hook implementation raises."""

    @hookimpl
    def hub_register_channels(self, register: Callable[[type[Channel]], None]) -> None:
        raise RuntimeError("boom in register")


class Typo:
    """A plugin implementing a hook the hub does not declare."""

    @hookimpl
    def hub_typo(self) -> None:
        pass


def registering(*classes: type[Channel]) -> object:
    class Plugin:
        @hookimpl
        def hub_register_channels(self, register: ChannelRegistrar) -> None:
            for cls in classes:
                register.add(cls)

    return Plugin()


# ---- real entry points --------------------------------------------------------------------------


def test_built_in_plugins_are_discovered_with_versions(load_hub_plugins: Load) -> None:
    _, _, report = load_hub_plugins(disabled=[])
    loaded = {p.name: p for p in report.loaded}
    for name, dist in BUILT_INS.items():
        assert name in loaded, report.failed.get(name, f"{name} not discovered")
        assert loaded[name].distribution == dist
        assert loaded[name].version == importlib.metadata.version(dist)
    assert not set(BUILT_INS) & set(report.failed)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Install a distribution by hand on a fresh sys.path entry: a module and its dist-info."""
    monkeypatch.syspath_prepend(str(tmp_path))
    added: list[str] = []

    def install(dist: str, version: str, entry: str, module: str, source: str | None) -> None:
        if source is not None:
            (tmp_path / f"{module}.py").write_text(source)
            added.append(module)
        info = tmp_path / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[hub]\n{entry} = {module}\n")
        importlib.invalidate_caches()

    yield install
    for module in added:
        sys.modules.pop(module, None)


CHANNEL_MODULE = """
from hub import hookimpl
from hub.channel import Channel

class TmpChannel(Channel):
    type_name = "tmpchan"
    display_name = "Tmp"

@hookimpl
def hub_register_channels(register):
    register.add(TmpChannel)
"""


def test_installed_distribution_is_discovered(site: Callable[..., None], load_hub_plugins: Load) -> None:
    site("hub-tmpchan", "1.2.3", "tmpchan", "hub_tmpchan_mod", CHANNEL_MODULE)
    _, registry, report = load_hub_plugins()
    [info] = [p for p in report.loaded if p.name == "tmpchan"]
    assert (info.distribution, info.version) == ("hub-tmpchan", "1.2.3")
    assert info.hooks == ["hub_register_channels"] and info.channels == ["tmpchan"]
    assert "tmpchan" in registry and registry.owner("tmpchan") == "tmpchan"


def test_entry_point_whose_module_is_missing_is_skipped_by_name(
    site: Callable[..., None], load_hub_plugins: Load, caplog: pytest.LogCaptureFixture
) -> None:
    site("hub-ghost", "0.0.1", "ghost", "hub_ghost_module_that_does_not_exist", None)
    _, registry, report = load_hub_plugins(("fake", FakePlugin(FakeChannel.isolated())))
    assert "ModuleNotFoundError" in report.failed["ghost"]
    assert "ghost" not in {p.name for p in report.loaded}
    assert "fake" in registry, "one broken plugin must not take the others down"
    assert any("'ghost'" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_entry_point_import_error_is_fatal_in_strict_mode(
    monkeypatch: pytest.MonkeyPatch, load_hub_plugins: Load
) -> None:
    ghost = importlib.metadata.EntryPoint(name="ghost", value="hub_ghost_nowhere", group="hub")
    real = importlib.metadata.entry_points

    def entry_points(**kw: Any) -> Any:
        found = list(real(**kw))
        return [*found, ghost] if kw.get("group") == "hub" else found

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    with pytest.raises(PluginLoadError, match=r"'ghost'.*import failed"):
        load_hub_plugins(strict=True)
    monkeypatch.setenv("HUB_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="HUB_STRICT_PLUGINS"):
        load_plugins()


# ---- broken hook implementations ----------------------------------------------------------------


def test_raising_hook_is_reported_by_name_and_skipped(load_hub_plugins: Load) -> None:
    _, registry, report = load_hub_plugins(("broken", Raising()), ("fake", FakePlugin()))
    assert "RuntimeError: boom in register" in report.failed["broken"]
    assert "broken" not in {p.name for p in report.loaded}
    assert "fake" in registry
    assert set(BUILT_INS) <= {p.name for p in report.loaded}


def test_raising_hook_is_fatal_in_strict_mode(
    monkeypatch: pytest.MonkeyPatch, load_hub_plugins: Load
) -> None:
    with pytest.raises(PluginLoadError, match="'broken'"):
        load_hub_plugins(("broken", Raising()), strict=True)
    monkeypatch.setenv("HUB_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="'broken'"):
        load_plugins(extra=[("broken", Raising())])


def test_undeclared_hook_fails_at_start_up(load_hub_plugins: Load) -> None:
    with pytest.raises(PluginLoadError, match="hub_typo"):
        load_hub_plugins(("typo", Typo()))


def test_undeclared_hook_error_names_the_plugin(load_hub_plugins: Load) -> None:
    with pytest.raises(PluginLoadError, match="'typo'"):
        load_hub_plugins(("typo", Typo()))


def test_plugin_name_taken_twice_is_reported(load_hub_plugins: Load) -> None:
    _, registry, report = load_hub_plugins(("whatsapp", FakePlugin()), disabled=[])
    assert "already registered" in report.failed["whatsapp"]
    assert "fake" not in registry


# ---- the disable list ---------------------------------------------------------------------------


def test_disable_list_blocks_entry_points_and_extras(
    monkeypatch: pytest.MonkeyPatch, load_hub_plugins: Load
) -> None:
    monkeypatch.setenv("HUB_DISABLE_PLUGINS", " email , fake")
    pm, registry, report = load_hub_plugins(("fake", FakePlugin()))
    names = {p.name for p in report.loaded}
    assert "email" not in names and "fake" not in names
    assert sorted(report.disabled) == ["email", "fake"]
    assert pm.is_blocked("email") and "fake" not in registry
    assert {"whatsapp", "facebook"} <= names


def test_explicit_disabled_overrides_the_environment(
    monkeypatch: pytest.MonkeyPatch, load_hub_plugins: Load
) -> None:
    monkeypatch.setenv("HUB_DISABLE_PLUGINS", "fake")
    _, registry, _ = load_hub_plugins(("fake", FakePlugin()), disabled=[])
    assert "fake" in registry


# ---- channel types ------------------------------------------------------------------------------


def test_same_type_name_twice_names_both_plugins(load_hub_plugins: Load) -> None:
    with pytest.raises(PluginLoadError) as info:
        load_hub_plugins(("first", FakePlugin()), ("second", FakePlugin(FakeChannel.isolated())))
    message = str(info.value)
    assert "'fake'" in message and "'first'" in message and "'second'" in message


class LaxSettings(ChannelSettings):
    model_config = ConfigDict(extra="ignore")


class NotSettings:
    pass


def _channel(**attrs: Any) -> type[Channel]:
    base = {"type_name": "okname", "display_name": "Ok"}
    return type("Bad", (Channel,), {**base, **attrs})


@pytest.mark.parametrize(
    ("cls", "words"),
    [
        (_channel(type_name="Bad-Name"), "type_name"),
        (_channel(type_name=""), "type_name"),
        (_channel(type_name="9lives"), "type_name"),
        (_channel(Settings=LaxSettings), "forbid extra"),
        (_channel(Settings=NotSettings), "subclass ChannelSettings"),
        (_channel(capabilities={"text": True}), "Capabilities"),
        (_channel(mode="poll"), "mode"),
        (type("NotAChannel", (), {"type_name": "x"}), "not a Channel"),
    ],
    ids=["dash", "empty", "digit", "lax-settings", "not-settings", "caps-dict", "mode", "not-channel"],
)
def test_invalid_channel_class_is_refused(load_hub_plugins: Load, cls: type[Channel], words: str) -> None:
    with pytest.raises(PluginLoadError, match=words) as info:
        load_hub_plugins(("badplugin", registering(cls)))
    assert "'badplugin'" in str(info.value)


def test_valid_channel_is_registered_with_its_plugin(load_hub_plugins: Load) -> None:
    good = _channel(capabilities=Capabilities(reactions=True))
    _, registry, report = load_hub_plugins(("goodplugin", registering(good)))
    assert registry.get("okname") is good and registry.owner("okname") == "goodplugin"
    [info] = [p for p in report.loaded if p.name == "goodplugin"]
    assert info.channels == ["okname"] and info.version is None


# ---- the fixtures and tracing -------------------------------------------------------------------


def test_kit_fixtures_register_the_fake_channel(
    plugin_manager: Any, channel_registry: Any, fake_channel_plugin: FakePlugin
) -> None:
    assert channel_registry.get("fake") is fake_channel_plugin.channel_cls
    assert plugin_manager.get_plugin("fake") is fake_channel_plugin


def test_trace_hooks_logs_hook_calls(
    monkeypatch: pytest.MonkeyPatch, load_hub_plugins: Load, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Event] = []

    class Observer:
        @hookimpl
        def hub_on_event(self, event: Event) -> None:
            seen.append(event)

    monkeypatch.setenv("HUB_TRACE_HOOKS", "1")
    pm, _, _ = load_hub_plugins(("observer", Observer()))
    caplog.set_level(logging.INFO, logger="hub.plugins")
    event = Event(seq=1, type="config.updated", data={}, created_at=utcnow())
    pm.hook.hub_on_event(event=event)
    assert seen == [event]
    assert any("hub_on_event" in r.getMessage() for r in caplog.records)


# ---- the contract is the one called -------------------------------------------------------------


def test_trace_hooks_sees_hub_register_channels(
    monkeypatch: pytest.MonkeyPatch, load_hub_plugins: Load, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HUB_TRACE_HOOKS", "1")
    caplog.set_level(logging.INFO, logger="hub.plugins")
    _, registry, _ = load_hub_plugins(("fake", FakePlugin()))
    assert "fake" in registry
    traced = [r.getMessage() for r in caplog.records if r.getMessage().startswith("hook:")]
    assert any("hub_register_channels" in line for line in traced), traced


async def test_trace_hooks_sees_hub_on_event_in_a_running_hub(
    monkeypatch: pytest.MonkeyPatch, make_hub_client: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Event] = []

    class Observer:
        @hookimpl
        def hub_on_event(self, event: Event) -> None:
            seen.append(event)

    monkeypatch.setenv("HUB_TRACE_HOOKS", "1")
    caplog.set_level(logging.INFO, logger="hub.plugins")
    hub = await make_hub_client(("observer", Observer()))
    await hub.create_channel("fake", {"secret": "s3cret-value", "verify_token": "v"}, "fake-1")
    # The channel, and the per-user configuration resource it changes (hub.services.config).
    assert [e.type for e in seen] == ["channel.updated", "config.updated"]
    traced = [r.getMessage() for r in caplog.records if r.getMessage().startswith("hook:")]
    assert any("hub_on_event" in line for line in traced), traced


class AsyncRegister:
    """A plugin whose hook is a coroutine function: pluggy would never await it."""

    @hookimpl
    async def hub_register_channels(self, register: Callable[[type[Channel]], None]) -> None:
        register(_channel(type_name="asyncchan"))


class AsyncObserver:
    @hookimpl
    async def hub_on_event(self, event: Event) -> None:
        pass


@pytest.mark.parametrize("plugin", [AsyncRegister(), AsyncObserver()], ids=["register", "observer"])
def test_async_def_hook_is_refused_by_name(load_hub_plugins: Load, plugin: object) -> None:
    pm, registry, report = load_hub_plugins(("asyncplugin", plugin), ("fake", FakePlugin()))
    assert "async def" in report.failed["asyncplugin"], report.failed
    assert "asyncplugin" not in {p.name for p in report.loaded}
    assert not pm.has_plugin("asyncplugin"), "a refused plugin must not observe anything"
    assert "fake" in registry and "asyncchan" not in registry
    with pytest.raises(PluginLoadError, match=r"'asyncplugin'.*async def"):
        load_hub_plugins(("asyncplugin", plugin), strict=True)


class RegistersThenRaises:
    @hookimpl
    def hub_register_channels(self, register: Any) -> None:
        register.add(_channel(type_name="halfway"))
        raise RuntimeError("boom after registering")


def test_channels_of_a_plugin_that_raised_are_unregistered(load_hub_plugins: Load) -> None:
    pm, registry, report = load_hub_plugins(("halfplugin", RegistersThenRaises()), ("fake", FakePlugin()))
    assert "boom after registering" in report.failed["halfplugin"]
    assert "halfway" not in registry, "a failed plugin's channel types must not stay registered"
    assert registry.owner("halfway") is None
    assert "fake" in registry
    assert not pm.has_plugin("halfplugin")


# ---- the registrar and the compatibility policy -------------------------------------------------


def test_registrar_add_registers_without_warnings(load_hub_plugins: Load) -> None:
    class Plugin:
        @hookimpl
        def hub_register_channels(self, register: ChannelRegistrar) -> None:
            register.add(_channel(type_name="addchan"))

    _, registry, report = load_hub_plugins(("addplugin", Plugin()))
    assert registry.owner("addchan") == "addplugin"
    [info] = [p for p in report.loaded if p.name == "addplugin"]
    assert info.warnings == []


def test_calling_register_still_works_with_a_deprecation_naming_the_plugin(
    load_hub_plugins: Load, caplog: pytest.LogCaptureFixture
) -> None:
    class OldStyle:  # plugin API 1.0: register was a bare callable
        @hookimpl
        def hub_register_channels(self, register: Callable[[type[Channel]], None]) -> None:
            register(_channel(type_name="oldchan"))

    with pytest.warns(PluginDeprecationWarning, match=r"'oldplugin'.*register\.add"):
        _, registry, report = load_hub_plugins(("oldplugin", OldStyle()))
    assert registry.owner("oldchan") == "oldplugin"
    [info] = [p for p in report.loaded if p.name == "oldplugin"]
    assert len(info.warnings) == 1 and "removed in 2.0" in info.warnings[0]
    assert any("'oldplugin'" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def _with_manifest(**fields: Any) -> object:
    class Plugin:
        manifest = fields

        @hookimpl
        def hub_register_channels(self, register: ChannelRegistrar) -> None:
            register.add(_channel(type_name="manichan"))

    return Plugin()


def test_plugin_needing_an_incompatible_api_is_refused_with_a_clear_message(load_hub_plugins: Load) -> None:
    plugin = _with_manifest(plugin_api=">=2.0,<3", version="3.0.0")
    _, registry, report = load_hub_plugins(("future", plugin), ("fake", FakePlugin()))
    error = report.failed["future"]
    assert ">=2.0,<3" in error and PLUGIN_API_VERSION in error and "upgrade the hub" in error
    assert "manichan" not in registry and "fake" in registry
    with pytest.raises(PluginLoadError, match=r"'future'.*needs hub plugin API"):
        load_hub_plugins(("future", plugin), strict=True)


def test_compatible_manifest_is_reported(load_hub_plugins: Load) -> None:
    _, registry, report = load_hub_plugins(("now", _with_manifest(plugin_api=">=1.1,<2", version="1.0")))
    [info] = [p for p in report.loaded if p.name == "now"]
    assert info.plugin_api == ">=1.1,<2" and "manichan" in registry
    assert report.as_dict()["plugin_api"] == PLUGIN_API_VERSION


def test_invalid_manifest_is_refused_by_name(load_hub_plugins: Load) -> None:
    _, _, report = load_hub_plugins(("bad", _with_manifest(plugin_api="one point one", version="1")))
    assert "manifest is invalid" in report.failed["bad"] and "plugin_api" in report.failed["bad"]


async def test_the_api_names_a_broken_plugin_without_the_server_s_paths(
    site: Callable[..., None],
    make_hub_client: Callable[..., Any],
    tmp_path_factory: pytest.TempPathFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An import error names files by their full path; ``GET /api/v1/plugins`` shows what failed
    and where in the code, never where the server keeps its files (the log keeps the full text)."""
    layout = tmp_path_factory.mktemp("srv-layout")
    missing = layout / "etc" / "plugin.toml"
    site("hub-badimport", "0.1", "badimport", "hub_badimport_mod", "from hub.channel import NoSuchThing\n")
    site("hub-badopen", "0.1", "badopen", "hub_badopen_mod", f"open({str(missing)!r})\n")
    app = await make_hub_client()
    resp = await app.client.get("/api/v1/plugins", headers=app.admin_headers)
    assert resp.status == 200
    failed = {f["name"]: f["error"] for f in (await resp.json())["failed"]}
    for error in failed.values():
        assert CHECKOUT not in error and str(layout) not in error, error
    # Still says what failed, and where in the code: the module (below its import root where it
    # is on sys.path, else its file name).
    assert "ImportError: cannot import name 'NoSuchThing' from 'hub.channel' (" in failed["badimport"]
    assert failed["badimport"].endswith(("(hub/channel.py)", "(…/channel.py)")), failed["badimport"]
    assert "FileNotFoundError" in failed["badopen"] and "plugin.toml" in failed["badopen"]
    assert any(str(missing) in r.getMessage() for r in caplog.records), "the log keeps the full path"
