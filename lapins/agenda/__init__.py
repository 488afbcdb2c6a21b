"""Agents' agendas: calendars, rdvs, usagers, opening slots and absences."""
from lapins.agenda.blueprint import bp  # noqa: F401
from lapins.agenda import calendar, confirmations, day_sheet, duplicate_views, guardian_views, freed, messages, rdvs, schedule, sessions, usagers, views, waitlist  # noqa: F401,I001  (their routes register on bp)
