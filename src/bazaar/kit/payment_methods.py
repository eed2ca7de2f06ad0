"""Is this payment method the caller's? Asked of payments through the gateway, remembered.

An order or a bid names a payment method, which must belong to its buyer (ARCHITECTURE.md:
only payments knows). The answer comes from ``GET /api/payments/methods/{id}`` through
the gateway with the service's client-credentials token; payments answers a service
caller with any method and its ``user_id``, and 404 for one unknown or deleted.

Orders and bids must not wait for an HTTP call each (a buyer pays order after order,
bid after bid, with one card), so a confirmed (buyer, method) pair is remembered for a
while, and concurrent first checks of one method share one call. A method deleted
meanwhile is caught where it matters: payments checks it again when it charges, so its
charge fails (an order ends ``payment_failed``, a settlement moves on).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from bazaar.kit.errors import ServiceUnavailable
from bazaar.kit.gateway_client import GatewayClient


class PaymentMethodDirectory(Protocol):
    """Who owns a payment method (None: no such method)."""

    async def owner_of(self, method_id: uuid.UUID) -> uuid.UUID | None: ...


class GatewayPaymentMethods:
    """The directory kept by the payments service, asked through the gateway."""

    def __init__(self, client: GatewayClient) -> None:
        self._client = client

    async def owner_of(self, method_id: uuid.UUID) -> uuid.UUID | None:
        status, body = await self._client.request_json("GET", f"/api/payments/methods/{method_id}")
        if status == 200 and isinstance(body, dict) and body.get("user_id"):
            try:
                return uuid.UUID(str(body["user_id"]))
            except ValueError as exc:
                raise ServiceUnavailable("Payments answered a malformed method") from exc
        if status in (404, 410):
            return None
        raise ServiceUnavailable(f"Payments could not confirm the payment method ({status})")


class PaymentMethodCheck:
    """Says whether a method is the buyer's; remembers the pairs it confirmed.

    Without a directory (a service configured not to check) every method is the buyer's.
    """

    def __init__(
        self,
        directory: PaymentMethodDirectory | None,
        *,
        ttl_seconds: float,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._directory = directory
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._confirmed: dict[tuple[uuid.UUID, uuid.UUID], float] = {}
        self._pending: dict[uuid.UUID, asyncio.Future[uuid.UUID | None]] = {}

    async def owns(self, user_id: uuid.UUID, method_id: uuid.UUID) -> bool:
        """Whether ``method_id`` is ``user_id``'s (ServiceUnavailable: payments could not
        say)."""
        if self._directory is None:
            return True
        key = (user_id, method_id)
        now = self._clock()
        expires = self._confirmed.get(key)
        if expires is not None and expires > now:
            return True
        owner = await self._owner_of(self._directory, method_id)
        if owner != user_id:
            return False
        if len(self._confirmed) >= self._max_entries:
            self._confirmed = {k: e for k, e in self._confirmed.items() if e > now}
            if len(self._confirmed) >= self._max_entries:
                self._confirmed.clear()
        self._confirmed[key] = now + self._ttl
        return True

    async def _owner_of(
        self, directory: PaymentMethodDirectory, method_id: uuid.UUID
    ) -> uuid.UUID | None:
        """One call per method at a time: concurrent checks share its answer."""
        pending = self._pending.get(method_id)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this caller was cancelled
                # The first caller was cancelled mid-call: ask again below.
        future: asyncio.Future[uuid.UUID | None] = asyncio.get_running_loop().create_future()
        self._pending[method_id] = future
        try:
            owner = await directory.owner_of(method_id)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters, if any, raise it themselves
            raise
        else:
            future.set_result(owner)
            return owner
        finally:
            if self._pending.get(method_id) is future:
                del self._pending[method_id]
