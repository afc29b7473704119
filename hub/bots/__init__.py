"""Agent bots: external bots fed the conversation's events through a signed webhook, and a
built-in bot with keyword and menu flows; each holds a customer's new conversation (``pending``)
until it hands over, and receives nothing of it after that.

* ``service``: the admin's bots, the bot's identity in the app API, ``hand_over``;
* ``consumer``: the event log to deliveries (and a human reply's takeover), with a durable cursor;
* ``delivery``: webhook deliveries in order per conversation, retried, failing over to agents;
* ``flows``: the built-in bot's keyword and menu flows (pure);
* ``signing``: the webhook signature; ``guard``: when the built-in bot may answer.
"""
