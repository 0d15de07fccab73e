"""Run the emulator standalone: prints one JSON line with its URLs, then serves until SIGINT/SIGTERM.

python -m emulators.campaign --port 8090 [--client-id ID --client-secret S --tenant T --org-id O]
                             [--profiles N] [--events N] [--requests-per-second R]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from .emulator import CampaignEmulator
from .seed import fake_profiles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators.campaign", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--client-id", default="campaign-emulator-client")
    parser.add_argument("--client-secret", default="campaign-emulator-secret")
    parser.add_argument("--tenant", default="acme")
    parser.add_argument("--org-id", default="ABC123@AdobeOrg")
    parser.add_argument("--requests-per-second", type=int, default=None)
    parser.add_argument("--profiles", type=int, default=0, help="preload this many generated profiles")
    parser.add_argument("--events", type=int, default=0, help="publish this many generated events")
    args = parser.parse_args(argv)

    emulator = CampaignEmulator(
        client_id=args.client_id,
        client_secret=args.client_secret,
        org_id=args.org_id,
        tenant=args.tenant,
        requests_per_second=args.requests_per_second,
        port=args.port,
    )
    for profile in fake_profiles(args.profiles):
        emulator.put_profile(profile)
    if args.events:
        emulator.generate_events(args.events)
    emulator.start()
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    urls = {
        "base_url": emulator.base_url,
        "ims_token_url": emulator.ims_token_url,
        "campaign_url": emulator.campaign_url,
        "journal_url": emulator.journal_url,
        "org_id": emulator.org_id,
    }
    print(json.dumps(urls), flush=True)
    stopped.wait()
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
