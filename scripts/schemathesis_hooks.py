"""Schemathesis hooks for Holub's API run (scripts/test).

Some rules of the server depend on state no static schema can state; a schema-valid request
is made one the server takes:

- Date-times are drawn from an hour to eleven months ahead: `send_at` may be at most a year
  ahead (the document says it in words), and a key's `expires_at` must be in the future.
  Dates outside those bounds are covered by the Rust tests (`send_at_too_far`,
  `keys_carry_their_scopes_expire_and_record_their_last_use`).
- A message goes out only from a sender registered to the account (`sender_not_registered`
  otherwise, a 422): positive cases send from the sender `scripts/schemathesis` registers.
  Unregistered senders are covered by the end-to-end tests (`tests/tests/access.rs`).
- A consent entry's `at` may not be ahead of the server's clock (a 409): positive cases get
  one a day back.
- A text goes in at most 10 parts, which no length in characters states (670 UCS-2
  characters always fit, 1,530 GSM-7 ones may): positive sends are cut to 600 characters.
- A key's `expires_at` must be in the future: the coverage phase draws its boundary values
  (now) outside the date-time strategy, so positive cases get one a day ahead.
- A campaign sends one of the account's templates (`template_not_found` otherwise, a 422):
  positive cases name the template `scripts/schemathesis` makes, at its one version.
  Unknown templates and versions are covered by `tests/tests/campaigns.rs`.
- The run has one sender and one key: removing the sender would refuse every later send, and
  revoking or rotating the key (the stateful phase links `GET /v1/keys` to both) would leave
  every later case a 401. Those cases name another sender or key instead (a 404);
  removing senders and revoking the key in use are covered by `tests/tests/access.rs`.
"""

import datetime as dt
import os

import schemathesis
from hypothesis import strategies as st

REGISTERED_SENDER = "Holub"
# `holub_sk_<ULID>_<secret>_<crc>` names the key `key_<ULID>`.
_parts = os.environ.get("HOLUB_SCHEMATHESIS_KEY", "").split("_")
KEY_IN_USE = "key_" + _parts[2] if len(_parts) == 5 else None
OTHER_KEY = "key_01J0000000000000000000000Z"
TEMPLATE = os.environ.get("HOLUB_SCHEMATHESIS_TEMPLATE")

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
        # At most 10 parts: 670 characters always fit (UCS-2, 67 a part), 16 KiB of text
        # does not; how many parts a text takes is no length a schema can state. Longer
        # texts are covered by `text_too_long` in the Rust tests.
        if isinstance(case.body.get("text"), str) and len(case.body["text"]) > 600:
            cut = case.body["text"][:600]
            case.body["text"] = cut if cut.strip() else "Holub"
    if (
        case.operation.path == "/v1/keys"
        and case.method.upper() == "POST"
        and case.meta is not None
        and case.meta.generation.mode.is_positive
        and isinstance(case.body, dict)
        and "expires_at" in case.body
    ):
        ahead = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
        case.body["expires_at"] = ahead.replace(microsecond=0, tzinfo=None).isoformat() + "Z"
    if (
        case.operation.path == "/v1/consents"
        and case.method.upper() == "POST"
        and case.meta is not None
        and case.meta.generation.mode.is_positive
        and isinstance(case.body, dict)
        and isinstance(case.body.get("at"), str)
    ):
        # The date-time strategy draws from the future; an entry dated ahead of the clock
        # is a 409 (`time_in_future`, covered by `tests/tests/consent.rs`).
        past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
        case.body["at"] = past.replace(microsecond=0, tzinfo=None).isoformat() + "Z"
    if (
        case.operation.path == "/v1/campaigns"
        and case.method.upper() == "POST"
        and case.meta is not None
        and case.meta.generation.mode.is_positive
        and isinstance(case.body, dict)
        and TEMPLATE
    ):
        case.body["template_id"] = TEMPLATE
        case.body.pop("template_version", None)
    if (
        case.operation.path == "/v1/senders/{sender}"
        and isinstance(case.path_parameters, dict)
        and str(case.path_parameters.get("sender", "")).lower() == REGISTERED_SENDER.lower()
    ):
        case.path_parameters["sender"] = "Other" + REGISTERED_SENDER
    if (
        case.operation.path in ("/v1/keys/{id}/revoke", "/v1/keys/{id}/rotate")
        and isinstance(case.path_parameters, dict)
        and case.path_parameters.get("id") == KEY_IN_USE
    ):
        case.path_parameters["id"] = OTHER_KEY
    return case
