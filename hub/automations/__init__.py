"""Automations: rules admins configure (trigger, conditions, actions), run by the hub in a defined
order, logged with every condition's value, and kept from looping by design.

* ``definition``: the rule's shape (trigger, nested all/any conditions, actions, options);
* ``conditions``: what a condition reads (``Facts``) and how it is judged;
* ``hours``: business hours (a time zone, weekly opening times, holidays);
* ``guard``: whether an automatic message may be sent (auto-replies, bots, rate limit);
* ``engine``: the event-log consumer that runs rules, the out-of-office autoresponder and the
  time triggers;
* ``service``: rules, versions, the run log, dry runs and backtests for the admin API.
"""
