"""The Campaign clients against scripted HTTP answers: request shapes and error handling in isolation."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr

from shared.acs.client import CampaignClient
from shared.acs.errors import AmbiguousKeyError, JournalPositionExpired
from shared.acs.events import EmailEventType
from shared.acs.ims import ImsTokenProvider
from shared.acs.journal import JournalReader
from shared.errors import AuthenticationError, NotFoundError, RequestRejectedError, TransientError
from shared.http import RetryPolicy

SECRET = "test-secret-not-real"
BASE = "https://mc.example.test/acme/campaign"
JOURNAL = "https://events.example.test/events/organizations/1/integrations/2/reg-3"
FAST = RetryPolicy(total=3, backoff_factor=0.001, backoff_max=0.01, retry_after_max=0.01)
PROFILES = "profileAndServicesExt/profile"


def ims_provider(session, **options) -> ImsTokenProvider:
    return ImsTokenProvider(
        token_url="https://ims.example.test/ims/token/v3",
        client_id="cid",
        client_secret=options.pop("secret", SECRET),
        scopes=options.pop("scopes", ["openid", "AdobeID", "campaign_sdk"]),
        session=session,
        retry=FAST,
        **options,
    )


def token_reply(token="tok-1", expires_in=86399):
    return 200, {"access_token": token, "token_type": "bearer", "expires_in": expires_in}


def campaign(session, token) -> CampaignClient:
    return CampaignClient(base_url=BASE, client_id="cid", token_provider=token, session=session, retry=FAST)


# -- IMS ----------------------------------------------------------------------------------------


def test_ims_posts_client_credentials_form_with_comma_joined_scopes(scripted):
    session = scripted(lambda sent: token_reply())
    ims = ims_provider(session, secret=SecretStr(SECRET), scopes=["openid", "AdobeID"])

    assert ims.authorization() == "Bearer tok-1"

    (sent,) = session.sent
    assert sent.method == "POST"
    assert sent.data == {
        "grant_type": "client_credentials",
        "client_id": "cid",
        "client_secret": SECRET,
        "scope": "openid,AdobeID",
    }


def test_ims_mints_one_token_for_sixteen_threads_asking_at_once(scripted):
    barrier = threading.Barrier(16)

    def slow_token(sent):
        time.sleep(0.05)  # widen the window in which other threads ask for a token
        return token_reply()

    session = scripted(slow_token)
    ims = ims_provider(session)

    def ask(_):
        barrier.wait()
        return ims.authorization()

    with ThreadPoolExecutor(16) as pool:
        headers = set(pool.map(ask, range(16)))

    assert headers == {"Bearer tok-1"}
    assert len(session.sent) == 1


def test_ims_invalidate_drops_only_the_token_the_calling_thread_sent(scripted):
    tokens = iter(["tok-1", "tok-2", "tok-3"])
    session = scripted(lambda sent: token_reply(next(tokens)))
    ims = ims_provider(session)
    assert ims.authorization() == "Bearer tok-1"
    other_thread = ThreadPoolExecutor(1)
    assert other_thread.submit(ims.authorization).result() == "Bearer tok-1"

    ims.invalidate()  # this thread's tok-1 was rejected
    assert ims.authorization() == "Bearer tok-2"
    # The other thread reports its stale tok-1 later: tok-2 must survive.
    other_thread.submit(ims.invalidate).result()
    assert other_thread.submit(ims.authorization).result() == "Bearer tok-2"
    other_thread.shutdown()

    assert ims.tokens_minted == 2


def test_ims_reuses_a_short_lived_token_for_half_its_lifetime(scripted):
    session = scripted(lambda sent: token_reply(expires_in=600))
    ims = ims_provider(session, refresh_margin_seconds=300)

    ims.authorization()
    ims.authorization()

    assert len(session.sent) == 1


def test_ims_retries_a_throttled_or_failed_mint(scripted):
    replies = iter([(503, "busy"), (429, "slow down", {"Retry-After": "0"}), token_reply()])
    session = scripted(lambda sent: next(replies))

    assert ims_provider(session).authorization() == "Bearer tok-1"
    assert len(session.sent) == 3


@pytest.mark.parametrize("status", [400, 401])
def test_ims_bad_secret_raises_authentication_error_with_ims_reason_and_no_secret(scripted, status):
    reply = {"error": "invalid_client", "error_description": "invalid client_secret parameter"}
    session = scripted(lambda sent: (status, reply))
    ims = ims_provider(session)

    with pytest.raises(AuthenticationError) as caught:
        ims.authorization()

    error = caught.value
    assert error.code == "invalid_client"
    assert "invalid client_secret parameter" in str(error)
    assert SECRET not in f"{error} {error.body} {ims!r}"
    assert len(session.sent) == 1


# -- Campaign REST ------------------------------------------------------------------------------


def test_campaign_sends_adobe_headers_and_follows_next_href_exactly(scripted, static_token):
    next_href = f"{BASE}/{PROFILES}?_lineCount=2&_order=lastModified%20desc&_startKey=opaque"

    def pages(sent):
        if "_startKey" in sent.url:
            return 200, {"content": [{"PKey": "@c"}], "count": {"href": "..."}}
        return 200, {"content": [{"PKey": "@a"}, {"PKey": "@b"}], "next": {"href": next_href}}

    session = scripted(pages)
    client = campaign(session, static_token)

    pages_seen = list(client.iter_pages(PROFILES, line_count=2, order="lastModified desc"))

    assert [[r["PKey"] for r in page] for page in pages_seen] == [["@a", "@b"], ["@c"]]
    first, second = session.sent
    assert first.url == f"{BASE}/{PROFILES}?_lineCount=2&_order=lastModified%20desc"
    assert second.url == next_href
    assert first.headers["X-Api-Key"] == "cid"
    assert first.headers["Authorization"] == "Bearer token-1"
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["Cache-Control"] == "no-cache"


def test_campaign_custom_filters_get_parameter_suffix_and_builtins_do_not(scripted, static_token):
    session = scripted(lambda sent: (200, {"content": [{"PKey": "@a"}]}))
    client = campaign(session, static_token)

    client.find_by(PROFILES, "byExternalId", {"externalId": "c-1"})
    client.find_by(PROFILES, "Email", {"email": "a@example.test"}, custom=False)

    custom, builtin = session.sent
    assert custom.path.endswith("/profile/byExternalId")
    assert custom.query["externalId_parameter"] == "c-1"
    assert builtin.path.endswith("/profile/byEmail")
    assert builtin.query["email"] == "a@example.test"


def test_campaign_find_one_by_key_refuses_an_ambiguous_key(scripted, static_token):
    session = scripted(lambda sent: (200, {"content": [{"PKey": "@a"}, {"PKey": "@b"}]}))

    with pytest.raises(AmbiguousKeyError) as caught:
        campaign(session, static_token).find_one_by_key(PROFILES, "byExternalId", "externalId", "c-1")

    assert caught.value.pkeys == ["@a", "@b"]
    assert not caught.value.retriable


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"code": 500, "message": "RST-360011 An error.\nXTK-170006 Unable to parse."}, "XTK-170006"),
        ({"error_code": "PGS-220000", "message": "RST-360011 Error.\nPGS-220000 dup"}, "PGS-220000"),
        ("RST-360011 An error has occurred - please contact your administrator.", "RST-360011"),
    ],
)
def test_campaign_data_error_is_final_and_carries_the_specific_campaign_code(
    scripted, static_token, body, code
):
    session = scripted(lambda sent: (500, body))

    with pytest.raises(RequestRejectedError) as caught:
        campaign(session, static_token).patch(PROFILES, "@a", {"email": "not-an-email"})

    assert caught.value.code == code
    assert caught.value.status == 500
    assert len(session.sent) == 1


def test_campaign_bare_500_on_a_read_is_retried_as_transient(scripted, static_token):
    replies = iter([(500, {"code": 500, "message": "Oops"}), (200, {"PKey": "@a", "email": "a@x.test"})])
    session = scripted(lambda sent: next(replies))

    assert campaign(session, static_token).get(PROFILES, "@a") == {"PKey": "@a", "email": "a@x.test"}
    assert len(session.sent) == 2


def test_campaign_create_is_not_resent_after_an_ambiguous_500(scripted, static_token):
    session = scripted(lambda sent: (500, "Internal Server Error"))

    with pytest.raises(TransientError):
        campaign(session, static_token).create(PROFILES, {"email": "a@x.test"})

    assert len(session.sent) == 1


def test_campaign_refreshes_the_token_once_on_gateway_401013(scripted, static_token):
    def gateway(sent):
        if sent.headers["Authorization"] == "Bearer token-1":
            return 401, {"error_code": "401013", "message": "Oauth token is not valid"}
        return 200, {"PKey": "@a", "href": f"{BASE}/{PROFILES}/@a"}

    session = scripted(gateway)

    assert campaign(session, static_token).patch(PROFILES, "@a", {"firstName": "Ann"})["PKey"] == "@a"
    assert static_token.invalidations == 1
    assert session.sent[0].json == {"firstName": "Ann"}


def test_campaign_unprovisioned_product_is_an_authentication_error(scripted, static_token):
    session = scripted(lambda sent: (403, {"error_code": "403023", "message": "Profile is not valid"}))

    with pytest.raises(AuthenticationError) as caught:
        campaign(session, static_token).get(PROFILES, "@a")

    assert caught.value.code == "403023"


def test_campaign_unknown_pkey_reads_as_none_fails_a_patch_and_is_fine_to_delete(scripted, static_token):
    session = scripted(lambda sent: (404, {"code": 404, "message": "Not found"}))
    client = campaign(session, static_token)

    assert client.get(PROFILES, "@gone") is None
    client.delete(PROFILES, "@gone")
    with pytest.raises(NotFoundError):
        client.patch(PROFILES, "@gone", {"firstName": "x"})
    with pytest.raises(NotFoundError):
        client.delete(PROFILES, "@gone", missing_ok=False)


def test_campaign_changed_since_uses_the_filter_in_campaign_time_format_oldest_first(scripted, static_token):
    session = scripted(lambda sent: (200, {"content": [{"PKey": "@a"}]}))
    since = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)

    list(campaign(session, static_token).iter_changed_since(PROFILES, since, line_count=500))

    (sent,) = session.sent
    assert sent.path.endswith("/profile/byLastModifiedSince")
    assert sent.query == {
        "_lineCount": "500",
        "_order": "lastModified",
        "since_parameter": "2026-01-02 03:04:05.678Z",
    }


def test_campaign_changed_since_refuses_a_naive_timestamp(scripted, static_token):
    client = campaign(scripted(lambda sent: (200, {})), static_token)

    with pytest.raises(ValueError, match="timezone-aware"):
        list(client.iter_changed_since(PROFILES, datetime(2026, 1, 1)))


# -- I/O Events journal -------------------------------------------------------------------------


def journal_page(*positions, events=None):
    entries = [
        {"position": p, "event": (events or {}).get(p, {"eventId": f"e-{p}", "type": "open"})}
        for p in positions
    ]
    headers = {"Link": f'<{urlsplit(JOURNAL).path}?since={positions[-1]}&limit=2>; rel="next"'}
    return 200, {"events": entries, "_page": {"last": positions[-1], "count": len(entries)}}, headers


def reader(session, token, **options) -> JournalReader:
    return JournalReader(
        journal_url=JOURNAL,
        client_id="cid",
        org_id="ORG@AdobeOrg",
        token_provider=token,
        limit=2,
        session=session,
        retry=FAST,
        **options,
    )


def test_journal_follows_relative_next_links_until_204_and_exposes_retry_after(scripted, static_token):
    def journal(sent):
        since = sent.query.get("since")
        if since is None:
            return journal_page("p1", "p2")
        if since == "p2":
            return journal_page("p3")
        return 204, None, {"retry-after": "10", "Link": f'<{urlsplit(sent.url).path}?since=p3>; rel="next"'}

    session = scripted(journal)
    journal_reader = reader(session, static_token)

    batches = list(journal_reader.iter_batches(None))

    assert [b.position for b in batches] == ["p2", "p3"]
    assert [[e.event_id for e in b.events] for b in batches] == [["e-p1", "e-p2"], ["e-p3"]]
    assert batches[0].events[0].type is EmailEventType.OPEN
    assert batches[0].events[1].position == "p2"
    assert journal_reader.retry_after == 10
    assert journal_reader.end_position == "p3"
    first, second, _ = session.sent
    assert first.query == {"limit": "2"}
    assert second.url == f"https://events.example.test{urlsplit(JOURNAL).path}?since=p2&limit=2"
    assert first.headers["x-api-key"] == "cid"
    assert first.headers["x-ims-org-id"] == "ORG@AdobeOrg"
    assert first.headers["Authorization"] == "Bearer token-1"


def test_journal_latest_jumps_to_the_end_and_reports_the_position_to_save(scripted, static_token):
    end = {"retry-after": "5", "Link": f'<{JOURNAL}?since=end-9>; rel="next"'}
    session = scripted(lambda sent: (204, None, end))
    journal_reader = reader(session, static_token)

    assert list(journal_reader.iter_batches(None, latest=True)) == []
    assert session.sent[0].query == {"limit": "2", "latest": "true"}
    assert journal_reader.end_position == "end-9"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (410, "Events at position p0 have expired."),
        (400, {"message": "Invalid position p0"}),
        (404, {"error_code": "404", "message": "position p0 not found"}),
    ],
)
def test_journal_expired_position_raises_a_typed_error(scripted, static_token, status, body):
    session = scripted(lambda sent: (status, body))

    with pytest.raises(JournalPositionExpired) as caught:
        list(reader(session, static_token).iter_batches("p0"))

    assert caught.value.position == "p0"
    assert caught.value.status == status


def test_journal_unknown_registration_is_not_mistaken_for_an_expired_position(scripted, static_token):
    session = scripted(lambda sent: (404, {"message": "registration not found"}))

    with pytest.raises(NotFoundError):
        list(reader(session, static_token).iter_batches(None))


def test_journal_without_link_header_continues_from_page_last(scripted, static_token):
    def journal(sent):
        if "since" not in sent.query:
            return 200, {"events": [{"position": "p1", "event": {"eventId": "e1"}}], "_page": {"last": "p1"}}
        return 204, None

    session = scripted(journal)

    batches = list(reader(session, static_token).iter_batches(None))

    assert [b.raw_count for b in batches] == [1]
    assert parse_qs(urlsplit(session.sent[1].url).query)["since"] == ["p1"]
