"""POST /api/support/actions: corrective actions, audited, shown in the target's timeline,
carried out by the owning service through the gateway with support's service token."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import text

from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import create_engine
from bazaar.kit.testing import running_app, wait_for
from tests.integration.support.conftest import (
    SUPPORT,
    GatewayStandIn,
    SupportHarness,
    start_support,
)
from tests.integration.support.flows import OrderFlow

PATHS = {
    "cancel_order": "/api/orders/{id}/cancel",
    "retry_order": "/api/orders/{id}/retry",
    "refund_payment": "/api/payments/{id}/cancel",
    "cancel_auction": "/api/auctions/{id}/cancel",
    "retry_settlement": "/api/auctions/{id}/settlement/retry",
}


async def ask(
    support: SupportHarness,
    action: str,
    target_id: object,
    reason: str = "customer called: charged but no confirmation",
    *,
    subject: str | None = None,
    roles: tuple[str, ...] = ("support",),
) -> Any:
    return await support.client.post(
        f"{SUPPORT}/actions",
        json={"action": action, "target_id": str(target_id), "reason": reason},
        headers=support.headers(roles, subject),
    )


async def outcome(support: SupportHarness, action_id: str) -> dict[str, Any]:
    async def ended() -> dict[str, Any] | None:
        response = await support.get(f"/actions/{action_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if body["status"] != "pending" else None

    return await wait_for(ended, timeout=15, message="the action's outcome")


@pytest.mark.parametrize("action", sorted(PATHS))
async def test_each_action_is_carried_out_by_its_owner_through_the_gateway(
    support: SupportHarness, action: str
) -> None:
    target = uuid.uuid4()
    agent = str(uuid.uuid4())

    response = await ask(support, action, target, subject=agent)

    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["action"] == action
    assert accepted["target_id"] == str(target)
    assert accepted["status"] == "pending"
    assert accepted["requested_by"] == agent
    assert accepted["created_at"]
    done = await outcome(support, accepted["id"])
    assert done["status"] == "succeeded"
    assert done["outcome"]["status_code"] == 202
    assert done["completed_at"]
    path = PATHS[action].format(id=target)
    calls = support.gateway.calls_to(path)
    assert len(calls) == 1
    assert calls[0].method == "POST"
    assert calls[0].roles == ["service"]
    assert calls[0].body == {"reason": "customer called: charged but no confirmation"}


async def test_an_action_is_audited_and_shown_in_its_targets_timeline(
    support: SupportHarness,
) -> None:
    order = OrderFlow()
    await support.wait_recorded(await support.publish([order.created()]))
    agent = str(uuid.uuid4())

    accepted = (
        await ask(support, "cancel_order", order.order_id, "duplicate order", subject=agent)
    ).json()
    await outcome(support, accepted["id"])

    async def both_in_timeline() -> list[dict[str, Any]] | None:
        body = (await support.get("/timeline", entity_id=str(order.order_id))).json()
        support_items = [i for i in body["items"] if i["type"].startswith("bazaar.support.")]
        return support_items if len(support_items) == 2 else None

    requested, completed = await wait_for(both_in_timeline, message="the action in the timeline")
    assert requested["type"] == "bazaar.support.action.requested"
    assert completed["type"] == "bazaar.support.action.completed"
    assert requested["user_id"] == agent
    assert requested["correlation_id"] == str(order.order_id)
    assert requested["data"]["reason"] == "duplicate order"
    assert requested["data"]["action_id"] == accepted["id"]
    assert completed["data"]["status"] == "succeeded"
    assert completed["data"]["response_status"] == 202
    async with support.app.state.sessions() as session:
        row = (
            await session.execute(
                text("SELECT requested_by, reason, status FROM support_actions WHERE id = :id"),
                {"id": accepted["id"]},
            )
        ).one()
    assert tuple(row) == (agent, "duplicate order", "succeeded")


async def test_a_refund_on_an_orders_payment_joins_the_orders_saga(
    support: SupportHarness,
) -> None:
    order = OrderFlow()
    await support.wait_recorded(await support.publish(order.confirmed_flow()))

    accepted = (await ask(support, "refund_payment", order.payment_id)).json()
    await outcome(support, accepted["id"])

    async def in_order_timeline() -> bool:
        body = (await support.get("/timeline", entity_id=str(order.order_id))).json()
        return any(i["type"] == "bazaar.support.action.completed" for i in body["items"])

    await wait_for(in_order_timeline, message="the refund in the order's timeline")


async def test_a_second_identical_action_changes_nothing(support: SupportHarness) -> None:
    target = uuid.uuid4()
    first = (await ask(support, "retry_order", target)).json()
    await outcome(support, first["id"])

    again = await ask(support, "retry_order", target, "asked twice")

    assert again.status_code == 202
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == first["id"]
    assert again.json()["reason"] == first["reason"]
    # Another action on the same target is another action.
    other = (await ask(support, "cancel_order", target)).json()
    assert other["id"] != first["id"]
    await outcome(support, other["id"])
    assert len(support.gateway.calls_to(f"/api/orders/{target}/retry")) == 1
    count = await support.scalar(
        "SELECT count(*) FROM support_actions WHERE target_id = :t AND action = 'retry_order'",
        t=target,
    )
    assert count == 1

    # The cancel's outcome is published after everything about this target (same key,
    # same partition): once it is in the history, a second retry request would be too.
    async def cancel_completed_recorded() -> bool:
        return bool(
            await support.scalar(
                "SELECT count(*) FROM events WHERE entity_id = :t"
                " AND type = 'bazaar.support.action.completed'"
                " AND data ->> 'action' = 'cancel_order'",
                t=str(target),
            )
        )

    await wait_for(cancel_completed_recorded, message="the cancel's outcome in the history")
    requested = await support.scalar(
        "SELECT count(*) FROM events WHERE entity_id = :t"
        " AND type = 'bazaar.support.action.requested' AND data ->> 'action' = 'retry_order'",
        t=str(target),
    )
    assert requested == 1


async def test_identical_actions_at_once_make_one(support: SupportHarness) -> None:
    target = uuid.uuid4()
    answers = await asyncio.gather(*(ask(support, "cancel_auction", target) for _ in range(5)))

    assert {answer.status_code for answer in answers} == {202}
    assert len({answer.json()["id"] for answer in answers}) == 1


async def test_a_refusal_is_recorded_with_the_owners_problem_code(
    support: SupportHarness,
) -> None:
    target = uuid.uuid4()
    support.gateway.script(
        f"/api/payments/{target}/cancel",
        (
            409,
            {
                "type": "https://bazaar.dev/problems/payment_not_cancellable",
                "title": "The payment was already refunded",
                "status": 409,
                "detail": "refunded on 2026-11-25",
                "code": "payment_not_cancellable",
            },
        ),
    )

    failed = await outcome(support, (await ask(support, "refund_payment", target)).json()["id"])

    assert failed["status"] == "failed"
    assert failed["outcome"]["status_code"] == 409
    assert failed["outcome"]["code"] == "payment_not_cancellable"
    assert failed["outcome"]["detail"] == "refunded on 2026-11-25"
    # A failed action may be asked for again: that is a new action.
    again = await ask(support, "refund_payment", target)
    assert again.json()["id"] != failed["id"]


async def test_an_unavailable_owner_is_asked_again_until_it_answers(
    support: SupportHarness,
) -> None:
    target = uuid.uuid4()
    path = f"/api/auctions/{target}/settlement/retry"
    unavailable = {"status": 503, "code": "upstream_unavailable", "title": "No healthy replica"}
    support.gateway.script(path, (503, unavailable), (503, unavailable))

    done = await outcome(support, (await ask(support, "retry_settlement", target)).json()["id"])

    assert done["status"] == "succeeded"
    assert done["attempts"] == 3
    assert len(support.gateway.calls_to(path)) == 3


async def test_an_owner_unavailable_on_every_try_fails_the_action(
    support: SupportHarness,
) -> None:
    target = uuid.uuid4()
    path = f"/api/orders/{target}/cancel"
    unavailable = {"status": 503, "code": "upstream_unavailable", "title": "No healthy replica"}
    support.gateway.script(path, *[(503, unavailable)] * support.settings.action_attempts)

    failed = await outcome(support, (await ask(support, "cancel_order", target)).json()["id"])

    assert failed["status"] == "failed"
    assert failed["outcome"]["code"] == "upstream_unavailable"
    assert failed["attempts"] == support.settings.action_attempts


@pytest.mark.parametrize("roles", [("customer",), ("seller",)])
async def test_customers_and_sellers_cannot_ask_for_actions(
    support: SupportHarness, roles: tuple[str, ...]
) -> None:
    response = await ask(support, "cancel_order", uuid.uuid4(), roles=roles)

    assert response.status_code == 403
    assert await support.scalar("SELECT count(*) FROM support_actions") == 0


async def test_admins_may_ask_for_actions(support: SupportHarness) -> None:
    response = await ask(support, "cancel_auction", uuid.uuid4(), roles=("admin",))
    assert response.status_code == 202


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "cancel_order", "target_id": str(uuid.uuid4()), "reason": "   "}, "reason"),
        ({"action": "cancel_order", "target_id": str(uuid.uuid4())}, "reason"),
        ({"action": "delete_everything", "target_id": str(uuid.uuid4()), "reason": "x"}, "action"),
        ({"action": "cancel_order", "target_id": "not-a-uuid", "reason": "x"}, "target_id"),
    ],
)
async def test_an_action_needs_a_known_action_a_target_and_a_reason(
    support: SupportHarness, body: dict[str, Any], field: str
) -> None:
    response = await support.client.post(f"{SUPPORT}/actions", json=body, headers=support.headers())

    assert response.status_code == 422
    assert field in {error["field"] for error in response.json()["errors"]}


async def test_an_unknown_action_id_is_not_found(support: SupportHarness) -> None:
    response = await support.get(f"/actions/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json()["code"] == "action_not_found"


async def test_actions_are_listed_by_target(support: SupportHarness) -> None:
    target = uuid.uuid4()
    first = (await ask(support, "cancel_order", target)).json()
    second = (await ask(support, "retry_order", target)).json()
    await ask(support, "cancel_order", uuid.uuid4())

    listed = (await support.get("/actions", target_id=str(target))).json()["items"]

    assert [a["id"] for a in listed] == [second["id"], first["id"]]


async def test_actions_asked_one_after_another_on_one_connection_are_all_recorded(
    support_database: str,
    support_platform: PlatformSettings,
    gateway: GatewayStandIn,
    token_issuer: Any,
) -> None:
    # Each action is inserted by the same prepared statement. After five runs on a
    # connection PostgreSQL may plan it once for all values; that plan must still find
    # the index that keeps one live action per target (its predicate cannot be a
    # parameter).
    app = await start_support(support_database, support_platform, database_pool_size=1)
    headers = token_issuer.headers(str(uuid.uuid4()), ("support",))
    targets = [uuid.uuid4() for _ in range(12)]
    async with running_app(app) as client:
        for target in targets:
            response = await client.post(
                f"{SUPPORT}/actions",
                json={"action": "retry_order", "target_id": str(target), "reason": "stuck"},
                headers=headers,
            )
            assert response.status_code == 202, response.text
        again = await client.post(
            f"{SUPPORT}/actions",
            json={"action": "retry_order", "target_id": str(targets[0]), "reason": "again"},
            headers=headers,
        )
        assert again.status_code == 202, again.text
        assert again.headers.get("idempotent-replayed") == "true"

    engine = create_engine(support_database, pooled=False)
    try:
        async with engine.connect() as connection:
            recorded = await connection.scalar(
                text("SELECT count(*) FROM support_actions WHERE target_id = ANY(:targets)"),
                {"targets": targets},
            )
    finally:
        await engine.dispose()
    assert recorded == len(targets)


async def test_pending_actions_survive_a_restart_and_locked_ones_are_skipped(
    support_database: str,
    support_platform: PlatformSettings,
    gateway: GatewayStandIn,
    token_issuer: Any,
) -> None:
    # A replica without credentials records actions but cannot carry them out: as if its
    # worker had crashed before each call.
    without_worker = await start_support(support_database, support_platform, with_credentials=False)
    headers = token_issuer.headers(str(uuid.uuid4()), ("support",))
    targets = [uuid.uuid4(), uuid.uuid4()]
    async with running_app(without_worker) as client:
        ids = []
        for target in targets:
            response = await client.post(
                f"{SUPPORT}/actions",
                json={"action": "cancel_order", "target_id": str(target), "reason": "stuck"},
                headers=headers,
            )
            ids.append(response.json()["id"])
    assert gateway.calls == []

    # Another worker holds the first action (mid-call), from before this replica starts:
    # this one must pass it by.
    holder_engine = create_engine(support_database, pooled=False)
    try:
        holder = await holder_engine.connect()
        held = await holder.begin()
        await holder.execute(
            text("SELECT id FROM support_actions WHERE id = :id FOR UPDATE"), {"id": ids[0]}
        )
        with_worker = await start_support(support_database, support_platform)
        async with running_app(with_worker) as client:

            async def second_done() -> bool:
                body = (await client.get(f"{SUPPORT}/actions/{ids[1]}", headers=headers)).json()
                return bool(body["status"] == "succeeded")

            await wait_for(second_done, timeout=15, message="the unlocked action carried out")
            assert gateway.calls_to(f"/api/orders/{targets[0]}/cancel") == []
            await held.rollback()
            await holder.close()

            async def first_done() -> bool:
                body = (await client.get(f"{SUPPORT}/actions/{ids[0]}", headers=headers)).json()
                return bool(body["status"] == "succeeded")

            await wait_for(first_done, timeout=15, message="the released action carried out")
    finally:
        await holder_engine.dispose()
    assert len(gateway.calls_to(f"/api/orders/{targets[0]}/cancel")) == 1
