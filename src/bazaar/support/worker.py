"""The worker that carries out support actions by asking the owning services.

It claims one due ``pending`` action at a time (``FOR UPDATE SKIP LOCKED``, so replicas
work side by side), calls the owning service through the gateway and records the answer
in the same transaction. A worker that dies mid-call leaves the action ``pending`` (its
transaction rolls back) for the next claim; the owning services' routes are idempotent,
so a repeated call changes nothing there.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from prometheus_client import Counter
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.kit.db import transaction
from bazaar.kit.errors import ServiceUnavailable
from bazaar.kit.gateway_client import GatewayClient
from bazaar.kit.logging import get_logger
from bazaar.kit.requestcontext import current_correlation_id, current_request_id
from bazaar.kit.telemetry import current_traceparent
from bazaar.support import repository, service
from bazaar.support.actions import (
    ACTIONS,
    FORWARDED_REASON_CHARS,
    RetryPolicy,
    Verdict,
    unreachable_verdict,
    verdict_of,
)
from bazaar.support.models import SupportAction

log = get_logger(__name__)

ACTIONS_COMPLETED = Counter(
    "bazaar_support_actions_total",
    "Support actions that reached an outcome, by action and outcome (succeeded, failed)",
    ["action", "outcome"],
)


async def call_owner(gateway: GatewayClient, action: SupportAction) -> Verdict:
    """Ask the owning service to carry out ``action``, through the gateway."""
    route = ACTIONS[action.action]
    current_request_id.set(action.request_id)
    current_traceparent.set(action.traceparent)
    current_correlation_id.set(action.correlation_id)
    try:
        status, body = await gateway.request_json(
            "POST",
            route.path_for(str(action.target_id)),
            json={"reason": action.reason[:FORWARDED_REASON_CHARS]},
        )
    except ServiceUnavailable as exc:
        return unreachable_verdict(exc)
    return verdict_of(status, body)


class ActionWorker:
    """Carries out pending actions until cancelled. ``wake`` starts a look at once."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        gateway: GatewayClient,
        retry: RetryPolicy,
        poll_seconds: float,
    ) -> None:
        self._sessions = sessions
        self._gateway = gateway
        self._retry = retry
        self._poll = poll_seconds
        self.wake = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                worked = await self.work_once()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("support_action_worker_failed", error=repr(exc))
                worked = False
            if worked:
                continue
            try:
                async with asyncio.timeout(self._poll):
                    await self.wake.wait()
            except TimeoutError:
                pass
            self.wake.clear()

    async def work_once(self) -> bool:
        """Carry out one due action; False when none was due."""
        async with transaction(self._sessions) as session:
            action = await repository.claim_due_action(session, datetime.now(UTC))
            if action is None:
                return False
            verdict = await call_owner(self._gateway, action)
            outcome = await service.record_attempt(
                session, action, verdict, retry=self._retry, now=datetime.now(UTC)
            )
        log.info(
            "support_action_attempted",
            action_id=str(action.id),
            action=action.action,
            target_id=str(action.target_id),
            answer=verdict.status,
            code=verdict.code,
            status=outcome,
        )
        if outcome != "pending":
            ACTIONS_COMPLETED.labels(action.action, outcome).inc()
        return True
