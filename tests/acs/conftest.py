"""Fixtures for the Campaign clients: a scripted `requests.Session` for offline tests, and the Campaign
emulator (imported lazily, so offline tests run without it) with production clients pointed at it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from emulators.campaign import CampaignEmulator
from shared.acs.client import CampaignClient
from shared.acs.ims import ImsTokenProvider
from shared.acs.journal import JournalReader
from shared.http import RetryPolicy
from tests.builders.tokens import CountingTokens

CLIENT_ID = "test-client-id"
CLIENT_SECRET = "test-secret-not-real"
ORG_ID = "ABC123@AdobeOrg"
SCOPES = ["openid", "AdobeID", "campaign_sdk", "additional_info.projectedProductContext", "adobeio_api"]
# Real backoff shapes, tiny delays: tests exercise retries without waiting for them.
FAST_RETRY = RetryPolicy(total=4, backoff_factor=0.01, backoff_max=0.05, retry_after_max=0.05)


@dataclass
class Sent:
    method: str
    url: str
    headers: dict[str, str]
    data: Any
    json: Any

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.url).query).items()}


Reply = tuple[int, Any] | tuple[int, Any, dict[str, str]]


class ScriptedSession(requests.Session):
    """Answers each request with `handler(sent)` -> (status, body[, headers]); records what was sent."""

    def __init__(self, handler: Callable[[Sent], Reply]) -> None:
        super().__init__()
        self.handler = handler
        self.sent: list[Sent] = []
        self._lock = threading.Lock()

    def request(self, method, url, params=None, data=None, headers=None, json=None, **kwargs):
        if params:
            url = requests.Request("GET", url, params=params).prepare().url
        sent = Sent(method, url, dict(headers or {}), data, json)
        with self._lock:
            self.sent.append(sent)
        status, body, *extra = self.handler(sent)
        return _response(url, status, body, extra[0] if extra else {})


def _response(url: str, status: int, body: Any, headers: dict[str, str]) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.url = url
    response.encoding = "utf-8"
    response.headers = CaseInsensitiveDict(headers)
    if body is None:
        response._content = b""
    elif isinstance(body, str):
        response._content = body.encode()
    else:
        response._content = json.dumps(body).encode()
        response.headers.setdefault("Content-Type", "application/json")
    return response


@pytest.fixture
def scripted() -> type[ScriptedSession]:
    return ScriptedSession


@pytest.fixture
def static_token() -> CountingTokens:
    return CountingTokens()


# -- the emulator -------------------------------------------------------------------------------


@pytest.fixture
def emulator_factory():
    started = []

    def start(**options: Any):
        options = {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "org_id": ORG_ID,
            "tenant": "acme",
            **options,
        }
        emulator = CampaignEmulator(**options).start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emu(emulator_factory):
    return emulator_factory()


@pytest.fixture
def make_ims() -> Callable[..., ImsTokenProvider]:
    def make(emu, *, secret: Any = CLIENT_SECRET) -> ImsTokenProvider:
        return ImsTokenProvider(
            token_url=emu.ims_token_url,
            client_id=CLIENT_ID,
            client_secret=secret,
            scopes=SCOPES,
            retry=FAST_RETRY,
        )

    return make


@pytest.fixture
def make_client(make_ims) -> Callable[..., CampaignClient]:
    def make(emu, ims: ImsTokenProvider | None = None, **options: Any) -> CampaignClient:
        options.setdefault("retry", FAST_RETRY)
        return CampaignClient(
            base_url=emu.campaign_url, client_id=CLIENT_ID, token_provider=ims or make_ims(emu), **options
        )

    return make


@pytest.fixture
def make_reader(make_ims) -> Callable[..., JournalReader]:
    def make(emu, ims: ImsTokenProvider | None = None, **options: Any) -> JournalReader:
        options.setdefault("retry", FAST_RETRY)
        return JournalReader(
            journal_url=emu.journal_url,
            client_id=CLIENT_ID,
            org_id=ORG_ID,
            token_provider=ims or make_ims(emu),
            **options,
        )

    return make
