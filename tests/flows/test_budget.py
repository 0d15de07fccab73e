"""One Campaign budget across instances (`shared/store/budget.py`): the split itself, one process on the
real Table (Azurite), and three OS processes of the app sharing one Azurite and one Campaign emulator
limited to R, as three Flex Consumption instances would."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from azure.data.tables import TableClient

from shared.store.budget import Demand, SharedBudget, allocate

ROOT = Path(__file__).resolve().parents[2]
R = 100  # the Campaign emulator's limit: requests per sliding 1 s window
# ACS_TOTAL_REQUESTS_PER_SECOND: under the licence, as docs/operations.md advises (evenly paced requests
# still bunch a little on their way, and three processes' more than one's)
TOTAL = 95
START = TOTAL / 4  # the static share: total ÷ the plan's instance limit


# -- the split -------------------------------------------------------------------------------------------


def test_one_busy_process_gets_the_whole_total_while_the_others_are_idle():
    grants = allocate(
        TOTAL,
        [Demand("busy", 97, True, hungry=True), Demand("idle-1", 0, False), Demand("idle-2", 0, False)],
        floor=1,
        start=START,
    )
    assert grants["busy"] == pytest.approx(TOTAL - 2 * 1.0)  # the idle ones keep their floor's headroom
    assert sum(grants.values()) <= TOTAL + 1e-9


def test_hungry_processes_share_equally_what_the_modest_ones_leave():
    grants = allocate(
        TOTAL,
        [Demand("a", 40, True, hungry=True), Demand("b", 40, True, hungry=True), Demand("modest", 8, False)],
        floor=1,
        start=START,
    )
    assert grants["modest"] == pytest.approx(8 * 1.1 + 1)
    assert grants["a"] == pytest.approx(grants["b"]) == pytest.approx((TOTAL - 9.8) / 2)


def test_a_bursty_process_that_wanted_more_without_using_its_grant_gets_half_as_much_again():
    grants = allocate(
        TOTAL,
        [Demand("load", 80, True, hungry=True), Demand("webhooks", 5, True, granted=30)],
        floor=1,
        start=START / 4,
    )
    assert grants["webhooks"] == pytest.approx(max(1.5 * 5, START / 4) + 1)
    assert grants["load"] == pytest.approx(TOTAL - 30)  # the webhooks' published 30 is not free yet


def test_a_newcomer_never_plans_on_top_of_what_the_others_may_send_and_gets_its_part_as_they_give_way():
    old, new = Demand("old", 94, True, granted=TOTAL, hungry=True), Demand("new", 0, True, hungry=True)
    alone = allocate(TOTAL, [old, new], floor=1, start=START)
    assert alone["new"] == 1  # the old one may still send the whole total: the floor only
    assert alone["old"] == pytest.approx(TOTAL / 2)  # it gives way at once
    old, new = Demand("old", 90, True, granted=TOTAL / 2, hungry=True), Demand("new", 1, True, 1, True)
    assert allocate(TOTAL, [old, new], floor=1, start=START)["new"] == pytest.approx(TOTAL / 2)


def test_a_quiet_process_whose_grant_includes_the_unasked_rest_still_counts_it_as_committed():
    quiet = [Demand("a", 5, False, granted=TOTAL / 2), Demand("b", 5, False, granted=TOTAL / 2)]
    waking = Demand("waking", 0, True, hungry=True)
    assert allocate(TOTAL, [*quiet, waking], floor=1, start=START)["waking"] == 1


def test_grants_from_any_snapshot_sum_to_at_most_the_total_plus_the_floors():
    rng = random.Random(17)
    for _ in range(2000):
        demands = [
            Demand(
                str(n), rng.uniform(0, TOTAL), rng.random() < 0.5, rng.uniform(0, TOTAL), rng.random() < 0.3
            )
            for n in range(rng.randint(1, 12))
        ]
        grants = allocate(TOTAL, demands, floor=1, start=START)
        assert sum(grants.values()) <= TOTAL + len(demands) * 1 + 1e-6
        committed = sum(d.granted for d in demands)
        for d in demands:
            assert grants[d.process] <= max(1, TOTAL - (committed - d.granted)) + 1e-6


# -- one process on the real table -------------------------------------------------------------------------


def test_a_process_alone_takes_the_whole_budget_and_withdraws_its_row_when_closed(state_store):
    budget = SharedBudget(state_store.budgets, api="campaign", total_per_second=TOTAL, max_instances=4)
    try:
        assert budget.rate() == pytest.approx(TOTAL)
        rows = list(state_store.budgets.query_entities("PartitionKey eq 'campaign'"))
        assert [row["RowKey"] for row in rows] == [budget.process_id]
    finally:
        budget.close()
    assert list(state_store.budgets.query_entities("PartitionKey eq 'campaign'")) == []


def test_an_unreachable_table_falls_back_to_the_static_share_without_failing_the_request(caplog):
    with socket_without_listener() as port:
        table = TableClient.from_connection_string(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
            "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
            f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;",
            table_name="budgets",
        )
        budget = SharedBudget(table, api="campaign", total_per_second=TOTAL, max_instances=4)
        started = time.monotonic()
        assert budget.rate() == pytest.approx(TOTAL / 4)
        assert time.monotonic() - started < 10
        budget.close()
    assert "budget.unavailable" in caplog.text


class socket_without_listener:
    """A loopback port nobody listens on (bound, never listening: connections are refused)."""

    def __enter__(self) -> int:
        import socket

        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        return self._socket.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self._socket.close()


# -- three OS processes ----------------------------------------------------------------------------------


class Sender:
    """`tests.flows.budget_sender`: one app instance in its own process."""

    def __init__(self, settings: dict[str, str], pkey: str, threads: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.flows.budget_sender", json.dumps(settings), pkey, str(threads)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        assert json.loads(line) == {"ready": True}, line

    def busy(self, seconds: float) -> None:
        self.process.stdin.write(f"busy {seconds}\n")
        self.process.stdin.flush()

    def result(self) -> dict[str, int]:
        return json.loads(self.process.stdout.readline())

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


class Attempts:
    """Samples the emulator's counters (admitted + refused requests) every 50 ms."""

    def __init__(self, campaign) -> None:
        self._campaign = campaign
        self.samples: list[tuple[float, int]] = []
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while self._running:
            count = self._campaign.request_count + self._campaign.limit.rejected["requests"]
            self.samples.append((time.monotonic(), count))
            time.sleep(0.05)

    def stop(self) -> None:
        self._running = False
        self._thread.join()

    def peak_per_second(self, start: float, end: float) -> float:
        """The most requests any 1 s window within [start, end] received."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        peak = 0.0
        for i, (t0, c0) in enumerate(inside):
            later = [c for t, c in inside[i:] if t - t0 <= 1.0]
            peak = max(peak, later[-1] - c0)
        return peak

    def rate(self, start: float, end: float) -> float:
        inside = [s for s in self.samples if start <= s[0] <= end]
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        return (c1 - c0) / (t1 - t0)


@pytest.mark.parametrize("stack", [{"campaign_options": {"requests_per_second": R}}], indirect=True)
def test_three_host_processes_stay_within_campaigns_limit_together_and_one_alone_gets_nearly_all(stack):
    settings = stack.app_settings(
        ACS_TOTAL_REQUESTS_PER_SECOND=str(TOTAL),
        ACS_MAX_CONCURRENCY="8",
        MAXIMUM_INSTANCE_COUNT="3",
        LOG_LEVEL="WARNING",
    )
    pkey = stack.campaign.put_profile({"externalId": "budget-probe", "email": "probe@example.com"})
    senders = [Sender(settings, pkey, threads=8) for _ in range(3)]
    attempts = Attempts(stack.campaign)
    try:
        together = time.monotonic()
        for sender in senders:
            sender.busy(8)
        shares = [sender.result() for sender in senders]
        alone = time.monotonic()
        senders[0].busy(10)
        lone = senders[0].result()
        end = time.monotonic()
    finally:
        attempts.stop()
        for sender in senders:
            sender.stop()

    sent = sum(s["sent"] for s in shares) + lone["sent"]
    throttled = sum(s["throttled"] for s in shares) + lone["throttled"]
    # All three busy: together at most R in any 1 s window, and each gets a fair part of it.
    assert attempts.peak_per_second(together, alone) <= R * 1.05
    assert throttled < 0.01 * sent, (throttled, sent)
    assert min(s["sent"] for s in shares) >= 0.2 * R * 8, shares
    # One busy, two idle (alive, sending nothing): within a few heartbeats, the busy one uses nearly all
    # of R.
    assert attempts.rate(alone + 4, end) >= 0.9 * R
    assert attempts.peak_per_second(alone, end) <= R * 1.05
