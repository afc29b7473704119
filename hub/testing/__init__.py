"""The hub's test kit for channel plugin authors (pytest plugin ``hub``, loaded automatically).

* ``hub.testing.conformance``: ``ChannelConformance``, the suite a channel plugin runs against itself;
* ``hub.testing.fake_channel``: ``FakeChannel``, a complete channel that records sends and scripts
  failures, and ``fake_plugin``, the plugin object registering it;
* ``hub.testing.fake_provider``: ``FakeProvider``, any provider's HTTP API faked (routes, scripted
  answers, latency, dropped connections), on loopback or in-process;
* ``hub.testing.pytest_plugin``: the fixtures (``fake_channel_plugin``, ``load_hub_plugins``,
  ``plugin_manager``, ``channel_registry``, ``channel_context``, ``no_network``).

``docs/plugins.md`` shows them at work.
"""

from hub.testing.fake_channel import FakeChannel, FakePlugin, fake_plugin, sign, webhook_body

__all__ = ["FakeChannel", "FakePlugin", "fake_plugin", "sign", "webhook_body"]
