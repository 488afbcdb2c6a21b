"""Tracebacks and request lines fit for the logs: where an error happened, without the data it was handling.

A database error's text quotes its SQL, and PostgreSQL's adds a DETAIL line with the failing row ("Failing row
contains (…, Kerbrat, +33671234598, …)") or key ("Key (email)=(…) already exists"): families' names, phones and
e-mails. The engine hides bound parameters (hide_parameters, config.py) but not what the server says, so such errors
are logged by their first line, cut before any quoted value. Other errors keep their message.
"""
from __future__ import annotations

import logging
import re
import traceback

from sqlalchemy.exc import StatementError


def safe_message(error: BaseException) -> str:
    if isinstance(error, StatementError):
        original = getattr(error, "orig", None)
        text = str(original if original is not None else error.args[0] if error.args else "")
        first = text.splitlines()[0] if text else ""
        first = first.split(': "', 1)[0].split("=(", 1)[0]  # 'invalid input syntax … : "value"', 'Key (x)=(value)'
        return f"({type(original).__module__}.{type(original).__name__}) {first}" if original is not None else first
    return str(error)


def safe_traceback(error: BaseException) -> str:
    """The frames and the exception's type, as `logger.exception` would show them, with a safe message."""
    frames = "".join(traceback.format_tb(error.__traceback__))
    return (f"Traceback (most recent call last):\n{frames}"
            f"{type(error).__module__}.{type(error).__qualname__}: {safe_message(error)}")


# A path's query string, up to the end of the request line or the quote around it.
QUERY_STRING = re.compile(r"(/[^\s?\"']*)\?[^\s\"']*")


class WithoutQueryStrings(logging.Filter):
    """Request lines without their query string, for the development server's log (`make run`, werkzeug).

    A usager search (`/usagers?q=<nom ou téléphone>`) puts a family's name or phone number in its query string;
    gunicorn's access log leaves it out by its format (gunicorn.conf.py), werkzeug's by this filter.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = QUERY_STRING.sub(r"\1?…", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(QUERY_STRING.sub(r"\1?…", arg) if isinstance(arg, str) else arg for arg in record.args)
        return True
