"""Schemathesis hooks for Holub's API run (scripts/test).

`send_at` is an RFC 3339 date-time at most a year ahead: a bound relative to now, which no
static schema can state (the document says it in words). Generated date-times are drawn
from a year back to eleven months ahead, so a schema-valid request is one the server takes;
dates outside the bound are covered by the Rust tests (`send_at_too_far`).
"""

import datetime as dt

import schemathesis
from hypothesis import strategies as st

_now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)

schemathesis.openapi.format(
    "date-time",
    st.datetimes(
        min_value=_now - dt.timedelta(days=365),
        max_value=_now + dt.timedelta(days=330),
    ).map(lambda d: d.replace(microsecond=0).isoformat() + "Z"),
)
