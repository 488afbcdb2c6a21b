"""Agents' own calendars: a secret ICS feed, their rdvs written to a CalDAV calendar, busy times read back from it.

- ics.py: the events Lapins shows an agent's calendar app (feed and CalDAV alike), with stable UIDs;
- feeds.py: the secret feed addresses (kept hashed), rotated and revoked; deactivating an agent revokes them;
- caldav_client.py: talking to a CalDAV server, its failures told in French;
- push.py: the durable queue of changes to write (a row per change, written in the booking's transaction);
- listeners.py: follows booking's events; busy.py: busy times read back; views.py: the pages and the feed.
"""
from lapins.calendars.blueprint import bp  # noqa: F401
from lapins.calendars import feeds, listeners, views  # noqa: F401,I001  (routes on bp; session and booking listeners)
