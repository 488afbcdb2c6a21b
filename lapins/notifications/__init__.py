"""Notifications: families are told of their rdvs by SMS and email, through the outbox and the worker.

outbox.py     plans messages when rdvs change, claims what is due, sends one message exactly once
tasks.py      the beat's dispatch job and the worker's sending task
timing.py     reminder offsets on the local wall clock, quiet hours
backends.py   the interface every provider implements, and the console backends of the embedded default
twilio.py     SMS through Twilio's SDK          email.py   email over SMTP, HTML + text + ICS
brevo.py      SMS through Brevo's SDK (the second operator; providers.py picks one per territory)
gsm.py        GSM-7 alphabet and segment count  sms_text.py  the French SMS texts, one segment each
links.py      the signed short link (/r/<token>) families receive
webhooks.py   Twilio's status callbacks and inbound SMS (STOP); Brevo's status callbacks (unsubscriptions too)

The agents' pages (history, manual reminder, SMS figures, dev inbox) are in lapins/agenda/messages.py.
"""
