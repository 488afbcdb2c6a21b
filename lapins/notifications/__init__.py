"""Notifications: families are told of their rdvs by SMS and email, through the outbox and the worker.

outbox.py     plans messages when rdvs change, claims what is due, sends one message exactly once
backends.py   the interface every provider implements, and the console backends of the embedded default
twilio.py     SMS through Twilio's SDK          email.py   email over SMTP, HTML + text + ICS
gsm.py        GSM-7 alphabet and segment count  sms_text.py  the French SMS texts, one segment each
webhooks.py   Twilio's status callbacks and inbound SMS (STOP)
views.py      notification history, manual reminder, SMS statistics, the dev inbox
"""
