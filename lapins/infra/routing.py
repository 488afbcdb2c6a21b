"""URL converters of Lapins' routes."""
from __future__ import annotations

from werkzeug.routing import IntegerConverter

# Rows' ids are PostgreSQL `integer` columns (SQLAlchemy's Integer): 32 bits, signed.
MAX_ID = 2**31 - 1


class DatabaseId(IntegerConverter):
    """`<int:…>` in Lapins' routes: a row's id. A number beyond what the database can hold names no row: the route
    does not match (404), instead of the database refusing the query (a 500 on PostgreSQL)."""

    def __init__(self, map, fixed_digits: int = 0, min: int | None = None, max: int | None = None,  # noqa: A002
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=MAX_ID if max is None else max, signed=signed)
