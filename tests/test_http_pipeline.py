"""ApiPipeline against a tiny local server: Retry-After, safe resends, token refresh, limiter, errors."""

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from werkzeug.wrappers import Request, Response

from emulators.common import EmulatorServer, ServerLimit, drop_connection
from shared.errors import (
    AuthenticationError,
    ConflictError,
    ConnectionFailedError,
    NotFoundError,
    PreconditionFailedError,
    RequestRejectedError,
    ThrottledError,
    TransientError,
)
from shared.http import ApiPipeline, RetryPolicy
from shared.ratelimit import FairSlots, RateLimiter
from tests.builders.tokens import CountingTokens


class ScriptedServer:
    """Answers each request with `handler(request, n)` where n counts requests per (method, path)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()
        self._server = EmulatorServer(self._wsgi).start()
        self.base_url = self._server.base_url

    def reset(self) -> None:
        self.handler: Callable[[Request, int], Response | None] = lambda request, n: Response("ok")
        self.counts: Counter = Counter()
        self.limit = ServerLimit()

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        with self._lock:
            self.counts[(request.method, request.path)] += 1
            n = self.counts[(request.method, request.path)]
        with self.limit.admit():
            response = self.handler(request, n)
        if response is None:
            return drop_connection(environ)(environ, start_response)
        return response(environ, start_response)

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture(scope="module")
def running_server():
    server = ScriptedServer()
    yield server
    server.stop()


@pytest.fixture
def server(running_server):
    running_server.reset()
    return running_server


@pytest.fixture
def sleeps():
    return []


def make_pipeline(server, sleeps, **options) -> ApiPipeline:
    options.setdefault("retry", RetryPolicy(total=3))
    return ApiPipeline(service="test", base_url=server.base_url, sleep=sleeps.append, **options)


def test_client_waits_retry_after_then_finishes(server, sleeps):
    server.handler = lambda request, n: (
        Response("busy", status=429, headers={"Retry-After": "7"}) if n == 1 else Response("done")
    )

    response = make_pipeline(server, sleeps).request("GET", "items")

    assert response.text == "done"
    assert sleeps == [7.0]
    assert server.counts[("GET", "/items")] == 2


def test_a_post_answered_429_is_resent_because_the_server_did_not_apply_it(server, sleeps):
    server.handler = lambda request, n: (
        Response("busy", status=429, headers={"Retry-After": "1"}) if n == 1 else Response(status=204)
    )

    response = make_pipeline(server, sleeps).request("POST", "items", json={"a": 1})

    assert response.status_code == 204
    assert server.counts[("POST", "/items")] == 2


def test_a_post_is_not_resent_after_a_dropped_connection(server, sleeps):
    server.handler = lambda request, n: None if n == 1 else Response(status=204)

    with pytest.raises(ConnectionFailedError) as caught:
        make_pipeline(server, sleeps).request("POST", "items", json={"a": 1})

    assert caught.value.may_have_applied is True
    assert server.counts[("POST", "/items")] == 1


def test_a_get_is_resent_after_a_dropped_connection(server, sleeps):
    server.handler = lambda request, n: None if n == 1 else Response("again")

    response = make_pipeline(server, sleeps).request("GET", "items")

    assert response.text == "again"
    assert server.counts[("GET", "/items")] == 2


def test_a_post_marked_idempotent_is_resent_after_a_dropped_connection(server, sleeps):
    server.handler = lambda request, n: None if n == 1 else Response(status=204)

    response = make_pipeline(server, sleeps).request("POST", "$batch", data=b"x", idempotent=True)

    assert response.status_code == 204
    assert server.counts[("POST", "/$batch")] == 2


def test_a_401_refreshes_the_token_once_then_succeeds(server, sleeps):
    tokens = CountingTokens(first=0)
    server.handler = lambda request, n: (
        Response("fresh") if request.headers["Authorization"] == "Bearer token-1" else Response(status=401)
    )

    response = make_pipeline(server, sleeps, token_provider=tokens).request("GET", "items")

    assert response.text == "fresh"
    assert tokens.invalidations == 1


def test_a_401_that_survives_the_refresh_is_an_authentication_error(server, sleeps):
    tokens = CountingTokens(first=0)
    server.handler = lambda request, n: Response(status=401)

    with pytest.raises(AuthenticationError):
        make_pipeline(server, sleeps, token_provider=tokens).request("GET", "items")

    assert tokens.invalidations == 1
    assert server.counts[("GET", "/items")] == 2


def test_the_limiter_never_exceeds_max_concurrency(server, sleeps):
    release = threading.Event()

    def slow(request, n):
        release.wait(0.05)
        return Response("ok")

    server.handler = slow
    pipeline = make_pipeline(server, sleeps, limiter=RateLimiter(max_concurrency=3))

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(lambda _: pipeline.request("GET", "items").status_code, range(24)))

    assert statuses == [200] * 24
    assert 1 <= server.limit.peak_in_flight <= 3
    assert pipeline.limiter.peak_in_flight <= 3


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_freed_slots_go_to_the_waiting_threads_in_arrival_order_never_to_a_newcomer():
    slots = FairSlots(1)
    slots.acquire()
    order: list[str] = []

    def take(name: str) -> None:
        slots.acquire()
        order.append(name)

    def start(name: str, waiting: int) -> None:
        threading.Thread(target=take, args=(name,), daemon=True).start()
        wait_until(lambda: len(slots._waiters) == waiting)

    for waiting, name in enumerate(("back from a Retry-After", "second", "third"), start=1):
        start(name, waiting)

    slots.release()  # handed to the oldest waiter: a thread arriving now queues behind the others
    start("newcomer", 3)
    for taken in range(1, 4):
        wait_until(lambda taken=taken: len(order) == taken)
        slots.release()
    wait_until(lambda: len(order) == 4)

    assert order == ["back from a Retry-After", "second", "third", "newcomer"]
    slots.release()
    with pytest.raises(ValueError, match="released more often than acquired"):
        slots.release()


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, RequestRejectedError),
        (403, AuthenticationError),
        (404, NotFoundError),
        (409, ConflictError),
        (412, PreconditionFailedError),
        (413, RequestRejectedError),
        (500, TransientError),
        (429, ThrottledError),
    ],
)
def test_error_statuses_become_typed_errors(server, sleeps, status, error_type):
    server.handler = lambda request, n: Response("nope", status=status, headers={"Retry-After": "2"})

    with pytest.raises(error_type) as caught:
        make_pipeline(server, sleeps).request("GET", "items")

    assert caught.value.status == status
    assert caught.value.retriable == (status in (429, 500))


def test_statuses_the_caller_accepts_are_returned_not_raised(server, sleeps):
    server.handler = lambda request, n: Response("gone", status=404)

    response = make_pipeline(server, sleeps).request("GET", "items", ok_statuses=(404,))

    assert response.status_code == 404


def test_an_error_response_the_caller_accepts_is_returned_but_others_still_raise(server, sleeps):
    server.handler = lambda request, n: Response(
        "--b--",
        status=404 if n == 1 else 409,
        content_type="multipart/mixed; boundary=b" if n == 1 else "text/plain",
    )
    pipeline = make_pipeline(server, sleeps)
    is_multipart = lambda r: r.headers["Content-Type"].startswith("multipart/")  # noqa: E731

    assert pipeline.request("POST", "$batch", accept=is_multipart).status_code == 404
    with pytest.raises(ConflictError):
        pipeline.request("POST", "$batch", accept=is_multipart)
