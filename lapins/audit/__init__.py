"""The audit trail of rdvs and usagers: who changed what and when, recorded on every flush, shown to admins.

recording.py writes it (session listeners), actors.py tells who is acting, views.py shows it.
"""
from lapins.audit.actors import acting  # noqa: F401
from lapins.audit import recording  # noqa: F401,I001  (its session listeners write the trail)
