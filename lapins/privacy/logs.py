"""Tracebacks fit for the logs: where an error happened, without the data it was handling.

A database error's text quotes its SQL, and PostgreSQL's adds a DETAIL line with the failing row ("Failing row
contains (…, Kerbrat, +33671234598, …)") or key ("Key (email)=(…) already exists"): families' names, phones and
e-mails. The engine hides bound parameters (hide_parameters, config.py) but not what the server says, so such errors
are logged by their first line, cut before any quoted value. Other errors keep their message.
"""
from __future__ import annotations

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
