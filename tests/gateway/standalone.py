"""`python -m tests.gateway.standalone PORT [field=value ...]`: the gateway's own server with the tests' registry and
keys and no broker (`conftest.serving`), in a process of its own, on the loop production runs (uvloop, as
`services.common.runtime` does), until it is killed. For figures of the whole process, such as its RSS; the
arguments after the port are `GatewaySettings` fields."""

from __future__ import annotations

import sys
import time

import uvloop

from services.gateway.settings import GatewaySettings
from tests.gateway.conftest import serving

READY = "serving"


def main() -> None:
    port, *pairs = sys.argv[1:]
    fields = dict(pair.split("=", 1) for pair in pairs)
    with serving(GatewaySettings(port=int(port), http_port=0, **fields), uvloop.new_event_loop):
        print(READY, flush=True)
        while True:
            time.sleep(60)


if __name__ == "__main__":
    main()
