"""`python -m emulators.dataverse --port P [--contacts N]`: print the connection details as one JSON
line, then serve until SIGINT/SIGTERM."""

import argparse
import json
import signal
import threading

from .emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, DataverseEmulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulators.dataverse", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--contacts", type=int, default=0, help="realistic contacts to seed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tenant-id", default=DEFAULT_TENANT_ID)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--max-requests", type=int, default=None)
    parser.add_argument("--max-concurrency", type=int, default=None)
    args = parser.parse_args(argv)

    emulator = DataverseEmulator(
        tenant_id=args.tenant_id,
        client_id=args.client_id,
        client_secret=args.client_secret,
        contacts=args.contacts,
        seed=args.seed,
        max_requests=args.max_requests,
        max_concurrency=args.max_concurrency,
        port=args.port,
    ).start()
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    print(
        json.dumps(
            {
                "base_url": emulator.base_url,
                "api_url": emulator.api_url,
                "authority": emulator.authority,
                "scope": emulator.scope,
                "ca_bundle": emulator.ca_bundle,
                "tenant_id": args.tenant_id,
                "client_id": args.client_id,
            }
        ),
        flush=True,
    )
    try:
        stop.wait()
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
