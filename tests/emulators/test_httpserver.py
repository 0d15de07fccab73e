"""The emulators' HTTP server keeps connections open, as the cloud services do, and still closes one on
a dropped-connection fault."""

from __future__ import annotations

import pytest
import requests
from werkzeug.wrappers import Request, Response

from emulators.common import EmulatorServer, drop_connection


@Request.application
def _echo(request: Request) -> Response:
    if request.path == "/drop":
        return drop_connection(request.environ)
    return Response(
        request.get_data() or b"empty", status=201, headers={"X-Port": request.environ["REMOTE_PORT"]}
    )


@pytest.fixture
def server():
    with EmulatorServer(_echo) as running:
        yield running


def test_one_connection_carries_many_requests_with_and_without_bodies(server):
    session = requests.Session()
    ports = set()
    for n in range(20):
        answer = (
            session.post(f"{server.base_url}/echo", json={"n": n}, timeout=5)
            if n % 2
            else session.get(f"{server.base_url}/echo", timeout=5)
        )
        assert answer.status_code == 201
        assert answer.text == (f'{{"n": {n}}}' if n % 2 else "empty")
        ports.add(answer.headers["X-Port"])
    assert len(ports) == 1  # every request came over the same client socket


def test_a_chunked_request_body_is_read_whole_and_the_connection_stays_usable(server):
    session = requests.Session()
    first = session.post(f"{server.base_url}/echo", data=iter([b"ab", b"cd"]), timeout=5)
    second = session.get(f"{server.base_url}/echo", timeout=5)
    assert first.text == "abcd" and second.text == "empty"
    assert first.headers["X-Port"] == second.headers["X-Port"]


def test_a_dropped_connection_answers_nothing_and_the_next_request_gets_a_new_one(server):
    session = requests.Session()
    before = session.get(f"{server.base_url}/echo", timeout=5).headers["X-Port"]
    with pytest.raises(requests.ConnectionError):
        session.get(f"{server.base_url}/drop", timeout=5)
    after = session.get(f"{server.base_url}/echo", timeout=5).headers["X-Port"]
    assert after != before
