#!/usr/bin/env python3
"""moto's server, with DynamoDB's one guarantee that moto leaves out: a write is atomic.

DynamoDB applies each request to an item atomically: a conditional UpdateItem is checked and
applied as one step, and a TransactWriteItems is all or nothing, however many clients write
at once. moto (5.x) serves requests on many threads and takes no lock, so two conditional
updates of one item that arrive together can both pass their condition. Holub's adapters
rely on that guarantee (counters, provider grants, claims), and tests that run callers
concurrently met moto's race, not Holub's. Here every DynamoDB request is handled under one
lock: stricter than DynamoDB (which orders writes per item), never weaker. The other
services are served as moto serves them.

Usage: as `moto_server` (the same arguments).
"""

import threading

from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_lock = threading.RLock()
_call_action = DynamoHandler.call_action


def _atomic_call_action(self):
    with _lock:
        return _call_action(self)


DynamoHandler.call_action = _atomic_call_action

if __name__ == "__main__":
    main()
