"""The family's page, reached from the link in every SMS and e-mail: no account, the signed link is the key.

It shows the rdv in plain French, in the territory's time zone, offers it as an ICS file, and lets the family
move it (moves.py) or cancel it until the motif's limits. A forwarded link reveals a time and a place, nothing more:
names are shown, and moving or cancelling allowed, only once this browser has given the first letters of the family's
last name (a light check, remembered in the signed session cookie, with a limit of wrong tries per rdv kept in the
database, and limits on the check's requests per rdv and per address in lapins.auth.limits).
"""
from lapins.family.pages import bp  # noqa: F401
from lapins.family import moves, offers, places  # noqa: F401,I001  (their routes register on bp)
