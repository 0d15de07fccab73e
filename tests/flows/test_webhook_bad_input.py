"""Bad input at `webhook_d365`, through the real local host over HTTP: whatever a caller sends answers a
4xx naming the reason (never a 5xx, which would say "try again"), is logged as a `webhook.answer` line,
and reaches nothing in Campaign. The fuzz cases are mutations of one valid Update body, generated from a
fixed seed so a failure can be replayed."""

from __future__ import annotations

import copy
import json
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from emulators.funchost import FunctionHost
from shared.d365.webhook import MAX_NESTING, WebhookPayloadError, parse
from shared.flows.webhook import WebhookEndpoint
from tests.d365.fixtures.webhook_bodies import (
    ACCOUNT_ID,
    CONTACT_ID,
    context,
    entity,
    money,
    option,
    reference,
    to_wire,
    wcf_date,
)
from tests.flows.test_ingress import CONFIG, post, profile_of, run_contacts_sync, update_context

SEED = 20240611
CREATED_ON = datetime(2024, 6, 11, 9, 30, 12, tzinfo=UTC)
JSON = "application/json"
MARK = "@@literal@@"  # stands for a raw JSON literal json.dumps cannot write (NaN, 5000 digits, …)


@pytest.fixture
def host(stack, function_app_env):
    function_app_env(CONFIG)
    with FunctionHost(run_timers=False) as running:
        yield running


@pytest.fixture
def answers(caplog) -> Callable[[], list[int]]:
    """The statuses of the `webhook.answer` lines logged so far (the host runs in-process: its request
    threads log to the same root logger caplog listens on)."""
    caplog.set_level(logging.INFO, logger="shared")
    return lambda: answer_statuses(caplog)


def answer_statuses(caplog) -> list[int]:
    return [record.status for record in caplog.records if getattr(record, "event", None) == "webhook.answer"]


# -- the cases -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    kind: str
    body: bytes
    content_type: str | None = JSON
    expect: frozenset[int] | None = None  # None: any answer but a 5xx


def valid_update() -> dict[str, Any]:
    """An Update of a contact Dataverse does not have: a mutation that stays valid is answered `gone`
    after one read of the row, and never writes to Campaign."""
    target = entity(
        "contact",
        CONTACT_ID,
        {
            "firstname": "Fuzz",
            "birthdate": wcf_date(datetime(1990, 5, 17, tzinfo=UTC)),
            "parentcustomerid": reference("account", ACCOUNT_ID, "Fabrikam"),
            "gendercode": option(2),
            "creditlimit": money(12.5),
        },
        row_version="7",
    )
    post_image = entity("contact", CONTACT_ID, {"fullname": "Fuzz Test"}, with_type=False)
    return context(
        "Update", "contact", CONTACT_ID, target=target, created_on=wcf_date(CREATED_ON), post_image=post_image
    )


def replaced(path: tuple[str | int, ...], value: Any, body: dict[str, Any] | None = None) -> dict[str, Any]:
    changed = copy.deepcopy(body or valid_update())
    parent = changed
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return changed


def with_literal(path: tuple[str | int, ...], literal: str) -> bytes:
    return to_wire(replaced(path, MARK)).replace(json.dumps(MARK).encode(), literal.encode())


TARGET = ("InputParameters", 0, "value")
FIRST_NAME = (*TARGET, "Attributes", 0, "value")
BIRTHDATE = (*TARGET, "Attributes", 1, "value")
WRONG_VALUES: list[Any] = [0, -1, 3.5, "", "x", True, None, [], [1, "two"], {}, {"key": "Target"}]
ONLY_400 = frozenset({400})
ONLY_415 = frozenset({415})
ONLY_200 = frozenset({200})


def deep_arrays(size: int) -> bytes:
    return b"[" * (size // 2) + b"]" * (size // 2)


def deep_objects(size: int) -> bytes:
    levels = size // 6
    return b'{"a": ' * levels + b"1" + b"}" * levels


def fuzz_cases(rng: random.Random) -> Iterator[Case]:
    raw = to_wire(valid_update())
    compact = json.dumps(valid_update()).encode()
    yield Case("valid", raw, expect=ONLY_200)

    for source in (raw, compact):
        for _ in range(20):
            yield Case("truncated", source[: rng.randrange(len(source))], expect=ONLY_400)
    for _ in range(40):
        flipped = bytearray(raw)
        for _ in range(rng.randint(1, 5)):
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        yield Case("byte flips", bytes(flipped))
    for _ in range(30):
        inserted = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            noise = rng.choice([b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\", b"\x00", b"\n", b"null"])
            noise = noise if rng.random() < 0.7 else bytes([rng.randrange(256)])
            at = rng.randrange(len(inserted) + 1)
            inserted[at:at] = noise
        yield Case("byte insertions", bytes(inserted))

    invalid_utf8 = [b"\xff", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc", b"\xc0\xaf"]
    invalid_utf8 += [b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]  # an encoded surrogate, a 5-byte form
    for sequence in invalid_utf8:
        yield Case("invalid UTF-8", raw.replace(b'"Fuzz"', b'"Fu' + sequence + b'zz"'), expect=ONLY_400)
        yield Case("invalid UTF-8", raw.replace(b'"contact"', b'"con' + sequence + b'"', 1), expect=ONLY_400)

    bom = "\ufeff".encode()
    yield Case("BOM", bom + raw, expect=ONLY_200)
    yield Case("BOM", bom + bom + raw, expect=ONLY_200)
    yield Case("BOM", raw[:1] + bom + raw[1:], expect=ONLY_400)  # between tokens: not whitespace
    for encoding in ("utf-16", "utf-16-le", "utf-32"):
        yield Case("not UTF-8", raw.decode().encode(encoding), expect=ONLY_400)

    for body in ([], [valid_update()], "x", 1, None, True):
        yield Case("not an object", json.dumps(body).encode(), expect=ONLY_400)
    for key in sorted(valid_update()):
        for value in rng.sample(WRONG_VALUES, 3):
            yield Case(f"wrong type for {key}", to_wire(replaced((key,), value)))
    for key in ("InputParameters", "PostEntityImages", "PreEntityImages", "OutputParameters"):
        pairs_as_object = {"Target": valid_update()["InputParameters"][0]["value"]}
        yield Case("object for key/value pairs", to_wire(replaced((key,), pairs_as_object)), expect=ONLY_400)
        yield Case("pair outside an array", to_wire(replaced((key,), {"key": "Target"})), expect=ONLY_400)
    for field in ("Attributes", "FormattedValues", "Id", "LogicalName", "RowVersion", "KeyAttributes"):
        for value in rng.sample(WRONG_VALUES, 3):
            yield Case(f"wrong type for Target.{field}", to_wire(replaced((*TARGET, field), value)))

    target = valid_update()["InputParameters"][0]["value"]
    missing_keys = [
        ("InputParameters", [{"value": target}]),
        ("InputParameters", [{}]),
        ("InputParameters", [{"Key": "Target", "Value": target}]),
        ("InputParameters", [{"key": None, "value": target}]),
        ("PostEntityImages", [{"key": "PostImage"}]),
        ("PostEntityImages", [{"value": target}]),
        ("SharedVariables", [{"value": 1}]),
    ]
    for key, value in missing_keys:
        yield Case("pair without its keys", to_wire(replaced((key,), value)), expect=ONLY_400)
    yield Case("attribute without its key", to_wire(replaced((*TARGET, "Attributes", 0), {"value": 1})))

    for bad_id in ("", "not-a-guid", "123", CONTACT_ID + "0", CONTACT_ID.replace("-", "-x", 1), 42, None):
        yield Case("non-GUID id", to_wire(replaced(("PrimaryEntityId",), bad_id)), expect=ONLY_400)
        yield Case("non-GUID id", to_wire(replaced((*TARGET, "Id"), bad_id)))
    yield Case("non-GUID id", to_wire(replaced((*TARGET, "Attributes", 2, "value", "Id"), "nope")))

    bad_dates = ["/Date(abc)/", "/Date()/", "2024-06-11T09:30:12Z", "/Date(1506384247000+07)/"]
    bad_dates += ["/Date(99999999999999999999)/", "/Date(-99999999999999999)/", f"/Date(1{'0' * 5000})/"]
    for date in bad_dates:
        yield Case("bad WCF date", to_wire(replaced(("OperationCreatedOn",), date)), expect=ONLY_400)
    for date in bad_dates[-3:]:  # shaped like a date, so read as one: out of range
        yield Case("bad WCF date in a column", to_wire(replaced(BIRTHDATE, date)), expect=ONLY_400)

    for literal in ("1" + "0" * 5000, "1e999", "-1e999", "1" + "0" * 30, str(2**70), "1e308", "-0.0"):
        yield Case("huge number", with_literal(("Depth",), literal))
        yield Case("huge number", with_literal((*TARGET, "Attributes", 4, "value", "Value"), literal))
    for literal in ("NaN", "Infinity", "-Infinity"):
        for path in (("Depth",), FIRST_NAME, (*TARGET, "Attributes", 4, "value", "Value")):
            yield Case("NaN/Infinity literal", with_literal(path, literal), expect=ONLY_400)

    for _ in range(3):
        yield Case("deep arrays", deep_arrays(rng.randint(200_000, 400_000)), expect=ONLY_400)
        yield Case("deep objects", deep_objects(rng.randint(200_000, 400_000)), expect=ONLY_400)
    levels = rng.randint(20_000, 40_000)
    yield Case("deep mixed", b'[{"a": ' * levels + b"1" + b"}]" * levels, expect=ONLY_400)
    yield Case("deep, never closed", b"[" * 300_000, expect=ONLY_400)
    yield Case("deep inside a body", with_literal(FIRST_NAME, deep_arrays(300_000).decode()), expect=ONLY_400)
    yield Case(
        "deep inside a body", with_literal(FIRST_NAME, deep_objects(250_000).decode()), expect=ONLY_400
    )
    yield Case("brackets in a string", to_wire(replaced(FIRST_NAME, "[{" * 100_000)), expect=ONLY_200)

    for content_type in (
        "text/plain",
        None,
        "",
        "text/json",
        "application/jsonx",
        "application/problem+json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml; charset=utf-8",
    ):
        yield Case("wrong content type", raw, content_type=content_type, expect=ONLY_415)
    yield Case("wrong content type", deep_arrays(300_000), content_type="text/plain", expect=ONLY_415)
    for content_type in (
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/json ;charset=UTF-8",
    ):
        yield Case("JSON content type", raw, content_type=content_type, expect=ONLY_200)


def send(host, case: Case):
    return post(host, case.body, headers={"content-type": case.content_type})


# -- the fuzz test ---------------------------------------------------------------------------------------


def test_hundreds_of_malformed_bodies_get_a_4xx_with_a_reason_and_reach_nothing(stack, host, answers):
    cases = list(fuzz_cases(random.Random(SEED)))
    assert len(cases) >= 300
    calls_before = dict(stack.campaign.engine_calls)
    problems = []
    for number, case in enumerate(cases):
        logged_before = len(answers())
        response = send(host, case)
        label = f"#{number} {case.kind}: {response.status_code} {response.text[:120]!r}"
        if response.status_code >= 500:
            problems.append(f"{label}: a 5xx")
        elif response.status_code >= 400:
            error = response.json().get("error") if response.text.startswith("{") else None
            if not (isinstance(error, str) and error.strip()):
                problems.append(f"{label}: no error")
        if case.expect is not None and response.status_code not in case.expect:
            problems.append(f"{label}: expected {sorted(case.expect)}")
        if answers()[logged_before:] != [response.status_code]:
            problems.append(f"{label}: no webhook.answer line with this status")
    assert not problems, "\n".join(problems)
    assert host.invocations["webhook_d365"] == len(cases)
    assert stack.campaign.engine_calls == calls_before


# -- focused ----------------------------------------------------------------------------------------------


def test_a_deeply_nested_body_answers_400_without_a_recursion_error(host, answers, caplog):
    response = send(host, Case("deep", deep_arrays(400_000)))
    assert response.status_code == 400
    assert response.json()["error"] == f"body nests arrays/objects deeper than {MAX_NESTING} levels"
    assert answers() == [400]
    assert not [r for r in caplog.records if r.exc_info or "Recursion" in r.getMessage()]


def test_a_text_plain_body_answers_415_and_is_not_applied(stack, host, answers):
    contact_id = stack.dataverse.seed_contacts(2, seed=21)[0]
    run_contacts_sync()
    stack.dataverse.update_row("contact", contact_id, {"firstname": "Plain"})
    version = int(stack.dataverse.get_row("contact", contact_id)["versionnumber"])
    calls_before = dict(stack.campaign.engine_calls)

    body = update_context(contact_id, version, "op-plain", firstname="Plain")
    response = post(host, body, headers={"content-type": "text/plain"})

    assert response.status_code == 415
    assert "application/json" in response.json()["error"] and "text/plain" in response.json()["error"]
    assert answers() == [415]
    assert stack.campaign.engine_calls == calls_before
    assert profile_of(stack, contact_id)["firstName"] != "Plain"


def test_a_json_body_with_a_charset_parameter_is_accepted_and_applied(stack, host):
    contact_id = stack.dataverse.seed_contacts(2, seed=22)[0]
    run_contacts_sync()
    stack.dataverse.update_row("contact", contact_id, {"firstname": "Charset"})
    version = int(stack.dataverse.get_row("contact", contact_id)["versionnumber"])

    body = update_context(contact_id, version, "op-charset", firstname="Charset")
    response = post(host, body, headers={"content-type": "application/json; charset=utf-8"})

    assert response.status_code == 200 and response.json()["outcome"] == "updated"
    assert profile_of(stack, contact_id)["firstName"] == "Charset"


def test_a_missing_content_type_answers_415_naming_what_is_expected(host):
    response = send(host, Case("no content type", to_wire(valid_update()), content_type=None))
    assert response.status_code == 415
    assert response.json()["error"] == "Content-Type must be application/json (none was sent)"


# -- the endpoint alone: order of the checks, failures inside or after the parse ----------------------------


def endpoint(handle_change=lambda record: "updated", **options) -> WebhookEndpoint:
    return WebhookEndpoint(handle_change=handle_change, **options)


def test_a_caller_without_the_secret_learns_nothing_about_the_payload_rules():
    guarded = endpoint(shared_secret="s3cret", max_body_bytes=1000)
    for body, content_type in ((deep_arrays(400_000), JSON), (b"{}", "text/plain"), (b"[[", JSON)):
        answer = guarded("POST", body, {"Content-Type": content_type})
        assert (answer.status, answer.body) == (401, {"error": "missing or wrong x-acsd365-secret header"})


def test_an_oversized_body_is_refused_before_its_content_type_is_looked_at():
    answer = endpoint(max_body_bytes=1000)("POST", b"x" * 1001, {"Content-Type": "text/plain"})
    assert answer.status == 413


def test_a_parser_bug_triggered_by_a_body_answers_400_and_logs_its_traceback(monkeypatch, caplog):
    def buggy_parse(body, headers):
        raise KeyError("Attributes")

    monkeypatch.setattr("shared.flows.webhook.parse", buggy_parse)
    caplog.set_level(logging.INFO, logger="shared")

    answer = endpoint()("POST", to_wire(valid_update()), {"content-type": JSON})

    assert (answer.status, answer.body) == (400, {"error": "unreadable payload (KeyError)"})
    (traceback,) = [r for r in caplog.records if r.exc_info]
    assert traceback.exc_info[0] is KeyError and traceback.getMessage() == "webhook payload could not be read"
    assert answer_statuses(caplog) == [400]


def test_a_recursion_error_escaping_the_parser_still_answers_400(monkeypatch):
    def recursing_parse(body, headers):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr("shared.flows.webhook.parse", recursing_parse)
    answer = endpoint()("POST", b"{}", {"content-type": JSON})
    assert answer.status == 400 and "too deeply" in answer.body["error"]


def test_a_state_store_failure_after_a_valid_payload_still_answers_503(caplog):
    def store_down(record):
        raise ConnectionError("state store unreachable")

    answer = endpoint(store_down)("POST", to_wire(valid_update()), {"content-type": JSON})
    assert answer.status == 503 and answer.body["id"] == CONTACT_ID


def test_a_body_nested_to_the_limit_is_read_and_one_level_more_is_refused():
    def nested(levels: int) -> bytes:
        # object (1) → SharedVariables array (2) → pair (3) → the value's arrays
        value = "[" * (levels - 3) + "]" * (levels - 3)
        return with_literal(("SharedVariables",), f'[{{"key": "v", "value": {value}}}]')

    assert parse(nested(MAX_NESTING)).id == CONTACT_ID
    with pytest.raises(WebhookPayloadError, match=f"deeper than {MAX_NESTING} levels"):
        parse(nested(MAX_NESTING + 1))
