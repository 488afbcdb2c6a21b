"""Loopback stand-ins for the outside services Lapins talks to: Twilio's REST API (twilio.py), an SMTP server
(smtp.py). They are real servers on 127.0.0.1 driven through the real client libraries, never monkeypatches."""
