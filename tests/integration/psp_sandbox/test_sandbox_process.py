"""The sandbox as the payments service meets it: a separate process, over HTTP."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.integration.psp_sandbox.conftest import SLOW_CARD_DELAY_SECONDS, SandboxProcess

APPROVES = "4242424242424242"
DECLINES = "4000000000000002"
INSUFFICIENT_FUNDS = "4000000000009995"
FAILS_FIRST = "4000000000000119"
ANSWERS_LATE = "4000000000000259"
TABLE = (APPROVES, DECLINES, INSUFFICIENT_FUNDS, FAILS_FIRST, ANSWERS_LATE)


async def tokenise(client: httpx.AsyncClient, number: str) -> str:
    response = await client.post(
        "/v1/tokens",
        json={"card_number": number, "exp_month": 12, "exp_year": 2099, "cvc": "123"},
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


async def charge(
    client: httpx.AsyncClient, key: str, token: str, amount: int = 1250
) -> httpx.Response:
    return await client.post(
        "/v1/charges",
        headers={"Idempotency-Key": key},
        json={"amount": amount, "currency": "USD", "token": token, "metadata": {"order": key}},
    )


async def charges_with_key(client: httpx.AsyncClient, key: str) -> list[dict[str, object]]:
    items: list[dict[str, object]] = (await client.get("/v1/charges")).json()["items"]
    return [item for item in items if item["idempotency_key"] == key]


async def test_the_approving_card_is_charged(client: httpx.AsyncClient) -> None:
    response = await charge(client, "approve-1", await tokenise(client, APPROVES))

    assert response.status_code == 201
    assert response.json()["status"] == "succeeded"
    assert [c["id"] for c in await charges_with_key(client, "approve-1")] == [response.json()["id"]]


@pytest.mark.parametrize(
    ("number", "failure_code"),
    [(DECLINES, "card_declined"), (INSUFFICIENT_FUNDS, "insufficient_funds")],
)
async def test_a_declining_card_answers_402_and_the_ledger_shows_the_failed_charge(
    client: httpx.AsyncClient, number: str, failure_code: str
) -> None:
    response = await charge(client, "decline-1", await tokenise(client, number))

    assert response.status_code == 402
    assert response.json()["code"] == failure_code
    ledger = await charges_with_key(client, "decline-1")
    assert [(c["status"], c["failure_code"]) for c in ledger] == [("failed", failure_code)]


async def test_the_fails_first_card_answers_500_then_approves_the_retry(
    client: httpx.AsyncClient,
) -> None:
    token = await tokenise(client, FAILS_FIRST)

    first = await charge(client, "flaky-1", token)
    assert first.status_code == 500
    assert await charges_with_key(client, "flaky-1") == []
    retry = await charge(client, "flaky-1", token)

    assert retry.status_code == 201
    assert [c["status"] for c in await charges_with_key(client, "flaky-1")] == ["succeeded"]
    assert (await charge(client, "flaky-2", token)).status_code == 500


async def test_a_patient_client_gets_the_late_cards_answer_after_the_delay(
    client: httpx.AsyncClient,
) -> None:
    token = await tokenise(client, ANSWERS_LATE)
    started = time.monotonic()

    response = await charge(client, "late-patient", token)

    assert response.status_code == 201
    assert time.monotonic() - started >= SLOW_CARD_DELAY_SECONDS
    assert response.json()["status"] == "succeeded"


async def test_a_lost_answer_is_found_by_idempotency_key_and_charged_once(
    sandbox: SandboxProcess, client: httpx.AsyncClient
) -> None:
    token = await tokenise(client, ANSWERS_LATE)

    async with sandbox.client(timeout=0.5) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            await charge(impatient, "late-1", token)
    found = await client.get("/v1/charges", params={"idempotency_key": "late-1"})

    assert found.status_code == 200
    [charge_made] = found.json()["items"]
    assert (charge_made["status"], charge_made["amount"]) == ("succeeded", 1250)
    assert (await client.get(f"/v1/charges/{charge_made['id']}")).json() == charge_made
    # A patient retry with the same key (answered after the delay) is the same charge.
    retried = await charge(client, "late-1", token)
    assert retried.headers["idempotent-replayed"] == "true"
    assert retried.json()["id"] == charge_made["id"]
    assert [c["id"] for c in await charges_with_key(client, "late-1")] == [charge_made["id"]]


@pytest.mark.parametrize("number", [APPROVES, FAILS_FIRST, ANSWERS_LATE])
async def test_six_concurrent_requests_with_one_key_make_one_charge(
    client: httpx.AsyncClient, number: str
) -> None:
    token = await tokenise(client, number)

    responses = await asyncio.gather(*(charge(client, "same-key", token) for _ in range(6)))

    approved = [response for response in responses if response.status_code == 201]
    assert len({response.json()["id"] for response in approved}) == 1
    expected_failures = 1 if number == FAILS_FIRST else 0
    assert len(approved) == 6 - expected_failures
    assert len(await charges_with_key(client, "same-key")) == 1


async def test_the_same_key_with_another_amount_is_refused(client: httpx.AsyncClient) -> None:
    token = await tokenise(client, APPROVES)
    await charge(client, "order-9", token, amount=100)

    response = await charge(client, "order-9", token, amount=101)

    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert len(await charges_with_key(client, "order-9")) == 1


async def test_refunds_full_partial_and_too_much(client: httpx.AsyncClient) -> None:
    token = await tokenise(client, APPROVES)
    partly = (await charge(client, "refund-1", token, amount=1000)).json()
    fully = (await charge(client, "refund-2", token, amount=500)).json()

    partial = await client.post(
        f"/v1/charges/{partly['id']}/refunds",
        headers={"Idempotency-Key": "r1"},
        json={"amount": 300},
    )
    too_much = await client.post(
        f"/v1/charges/{partly['id']}/refunds",
        headers={"Idempotency-Key": "r2"},
        json={"amount": 701},
    )
    full = await client.post(
        f"/v1/charges/{fully['id']}/refunds", headers={"Idempotency-Key": "r1"}
    )

    assert (partial.status_code, partial.json()["amount"]) == (201, 300)
    assert (too_much.status_code, too_much.json()["code"]) == (409, "amount_exceeds_refundable")
    assert (full.status_code, full.json()["amount"]) == (201, 500)
    ledger = {c["id"]: c for c in (await client.get("/v1/charges")).json()["items"]}
    assert ledger[partly["id"]]["refunded_amount"] == 300
    assert ledger[fully["id"]]["refunded_amount"] == 500


async def test_the_ledger_survives_a_restart(sandbox: SandboxProcess) -> None:
    async with sandbox.client() as client:
        token = await tokenise(client, APPROVES)
        flaky = await tokenise(client, FAILS_FIRST)
        made = (await charge(client, "persist-1", token, amount=1000)).json()
        await client.post(
            f"/v1/charges/{made['id']}/refunds",
            headers={"Idempotency-Key": "r1"},
            json={"amount": 250},
        )
        assert (await charge(client, "persist-2", flaky)).status_code == 500
        before = (await client.get("/v1/charges")).json()

    await sandbox.restart()

    async with sandbox.client() as client:
        assert (await client.get("/v1/charges")).json() == before
        assert (await client.get(f"/v1/charges/{made['id']}")).json()["refunded_amount"] == 250
        replay = await charge(client, "persist-1", token, amount=1000)
        assert (replay.status_code, replay.json()["id"]) == (201, made["id"])
        assert replay.headers["idempotent-replayed"] == "true"
        assert (await charge(client, "persist-2", flaky)).status_code == 201
        assert (await charge(client, "persist-3", token)).status_code == 201


async def test_invalid_cards_are_refused(client: httpx.AsyncClient) -> None:
    luhn = await client.post(
        "/v1/tokens",
        json={"card_number": "4242424242424241", "exp_month": 12, "exp_year": 2099, "cvc": "123"},
    )
    expired = await client.post(
        "/v1/tokens",
        json={"card_number": APPROVES, "exp_month": 1, "exp_year": 2020, "cvc": "123"},
    )

    assert (luhn.status_code, luhn.json()["code"]) == (422, "invalid_card_number")
    assert (expired.status_code, expired.json()["code"]) == (422, "expired_card")


async def test_no_card_number_is_written_to_the_data_dir_or_the_output(
    sandbox: SandboxProcess,
) -> None:
    refused = "4242424242424241"
    async with sandbox.client() as client:
        for n, number in enumerate(TABLE):
            token = await tokenise(client, number)
            if number != ANSWERS_LATE:
                await charge(client, f"secret-{n}", token)
                await charge(client, f"secret-{n}", token)
        spaced = " ".join(APPROVES[i : i + 4] for i in range(0, 16, 4))
        await client.post(
            "/v1/tokens",
            json={"card_number": spaced, "exp_month": 12, "exp_year": 2099, "cvc": "123"},
        )
        for bad in (refused, APPROVES + "0"):
            response = await client.post(
                "/v1/tokens",
                json={"card_number": bad, "exp_month": 12, "exp_year": 2099, "cvc": "123"},
            )
            assert response.status_code == 422
        assert len((await client.get("/v1/charges")).json()["items"]) == 4
    sandbox.stop()

    written = b"".join(path.read_bytes() for path in sandbox.data_dir.rglob("*") if path.is_file())
    output = sandbox.captured_output()
    assert b"charge_made" in output  # the process did log, at DEBUG
    for number in (*TABLE, refused, APPROVES + "0"):
        assert number.encode() not in written, number
        assert number.encode() not in output, number
        spaced_form = " ".join(number[i : i + 4] for i in range(0, len(number), 4)).encode()
        assert spaced_form not in output, number
