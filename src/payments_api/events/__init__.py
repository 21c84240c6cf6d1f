"""Outgoing events: what the platform's own apps hear about.

- ``outbox.emit`` writes one event row in the caller's transaction (the transactional
  outbox): an event exists if and only if the change it describes committed, and a
  ``change_key`` makes a second write for the same change a no-op.
- ``delivery`` sends events to registered endpoints, signed per the Standard Webhooks
  specification, with retries over about three days (``RETRY_SCHEDULE``).
- ``receipts`` emails receipts for some events when SMTP is configured.
- ``router`` has the feeds (``/me/events``, ``/admin/events``) and endpoint management.
"""
