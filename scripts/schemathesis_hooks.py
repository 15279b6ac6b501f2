"""Schemathesis hooks for Holub's API run (scripts/test).

Two rules of the server depend on state no static schema can state; a schema-valid request
is made one the server takes:

- Date-times are drawn from an hour to eleven months ahead: `send_at` may be at most a year
  ahead (the document says it in words), and a key's `expires_at` must be in the future.
  Dates outside those bounds are covered by the Rust tests (`send_at_too_far`,
  `keys_carry_their_scopes_expire_and_record_their_last_use`).
- A message goes out only from a sender registered to the account (`sender_not_registered`
  otherwise, a 422): positive cases send from the sender `scripts/schemathesis` registers.
  Unregistered senders are covered by the end-to-end tests (`tests/tests/access.rs`).
"""

import datetime as dt

import schemathesis
from hypothesis import strategies as st

REGISTERED_SENDER = "Holub"

_now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)

schemathesis.openapi.format(
    "date-time",
    st.datetimes(
        min_value=_now + dt.timedelta(hours=1),
        max_value=_now + dt.timedelta(days=330),
    ).map(lambda d: d.replace(microsecond=0).isoformat() + "Z"),
)


@schemathesis.hook
def map_case(context, case):
    sends = case.operation.path in ("/v1/messages", "/v1/messages/batch")
    if (
        sends
        and case.method.upper() == "POST"
        and case.meta is not None
        and case.meta.generation.mode.is_positive
        and isinstance(case.body, dict)
        and "from" in case.body
    ):
        case.body["from"] = REGISTERED_SENDER
    return case
