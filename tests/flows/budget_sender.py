"""One instance of the app in a process of its own, for `test_budget.py`: reads one Campaign profile
over and over from many threads through the production client (`get_app().campaign`, with its shared
budget), for as long as the test says.

    python -m tests.flows.budget_sender '<app settings JSON>' <profile PKey> <threads>

Prints `{"ready": true}` once its budget row is published, then obeys lines on stdin: `busy <seconds>`
sends for that long and prints `{"sent": n, "throttled": n}`; `quit` ends it. Between commands it is an
idle instance: it sends nothing, as one that Azure keeps warm.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time


def main() -> None:
    settings, pkey, threads = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    os.environ.update(settings)
    logging.basicConfig(format="%(created).3f %(process)d %(message)s")  # at LOG_LEVEL, to stderr
    from shared.app import get_app

    campaign = get_app().campaign
    campaign.get("profile", pkey)  # the IMS token, the connection and the budget row, before the clock runs
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[0] == "quit":
            return
        until = time.monotonic() + float(command[1])
        before = dict(campaign.stats)

        def send(until: float = until) -> None:
            while time.monotonic() < until:
                campaign.get("profile", pkey)

        workers = [threading.Thread(target=send) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        stats = campaign.stats
        print(
            json.dumps(
                {
                    "sent": stats["requests"] - before["requests"],
                    "throttled": stats["throttled"] - before["throttled"],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
