"""Realistic message flows, as the owning services publish them: an order confirmed, an
order whose payment was declined, an auction settled with its second bidder.

Each message is a contract model in a CloudEvents envelope made by ``new_envelope``
with the saga's correlation id, the user's id and the source the owning service uses,
keyed like the service keys it. Times are given explicitly (``at`` plus a step per
message), so tests can place a flow in the past.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bazaar.contracts import auctions, catalog, orders, payments
from bazaar.contracts.base import Message
from bazaar.kit.messaging.envelope import Envelope, new_envelope

STEP = timedelta(milliseconds=10)


@dataclass(frozen=True)
class Published:
    topic: str
    key: str
    envelope: Envelope


def message(
    body: Message,
    *,
    source: str,
    key: str,
    at: datetime,
    correlation_id: str | None,
    user_id: str | uuid.UUID | None,
) -> Published:
    envelope = new_envelope(
        source=source,
        type=body.TYPE,
        subject=key,
        data=body,
        correlation_id=correlation_id,
        user_id=user_id,
        dataschema=body.dataschema(),
    )
    return Published(body.TOPIC, key, envelope.model_copy(update={"time": at}))


@dataclass
class Clock:
    """Hands out increasing times from ``start``, one step per message."""

    start: datetime = field(default_factory=lambda: datetime.now(UTC))
    ticks: int = 0

    def next(self) -> datetime:
        self.ticks += 1
        return self.start + STEP * self.ticks


@dataclass
class OrderFlow:
    order_id: uuid.UUID = field(default_factory=uuid.uuid4)
    user_id: uuid.UUID = field(default_factory=uuid.uuid4)
    payment_id: uuid.UUID = field(default_factory=uuid.uuid4)
    item_id: uuid.UUID = field(default_factory=uuid.uuid4)
    method_id: uuid.UUID = field(default_factory=uuid.uuid4)
    total: int = 2500
    clock: Clock = field(default_factory=Clock)

    def _order(self, body: Message) -> Published:
        return message(
            body,
            source="bazaar/orders",
            key=str(self.order_id),
            at=self.clock.next(),
            correlation_id=str(self.order_id),
            user_id=self.user_id,
        )

    def _from(self, source: str, body: Message, key: uuid.UUID) -> Published:
        return message(
            body,
            source=source,
            key=str(key),
            at=self.clock.next(),
            correlation_id=str(self.order_id),
            user_id=self.user_id,
        )

    def _fields(self, status: str) -> dict[str, object]:
        return {
            "order_id": self.order_id,
            "user_id": self.user_id,
            "status": status,
            "total": self.total,
            "currency": "USD",
            "occurred_at": self.clock.start + STEP * (self.clock.ticks + 1),
        }

    def _payment(self) -> dict[str, object]:
        return {
            "payment_id": self.payment_id,
            "user_id": self.user_id,
            "amount": self.total,
            "currency": "USD",
            "reference_type": "order",
            "reference_id": self.order_id,
            "occurred_at": self.clock.start + STEP * (self.clock.ticks + 1),
        }

    def created(self) -> Published:
        return self._order(
            orders.OrderCreated(
                **self._fields("pending"),
                lines=[
                    orders.OrderLine(
                        item_id=self.item_id, title="Teapot", unit_price=self.total, quantity=1
                    )
                ],
                payment_method_id=self.method_id,
            )
        )

    def reserved(self) -> Iterator[Published]:
        line = catalog.StockLine(item_id=self.item_id, quantity=1)
        yield self._from(
            "bazaar/orders",
            catalog.ReserveStock(reservation_id=self.order_id, lines=[line]),
            self.order_id,
        )
        yield self._from(
            "bazaar/catalog",
            catalog.StockReserved(
                reservation_id=self.order_id,
                lines=[line],
                expires_at=self.clock.start + timedelta(minutes=15),
            ),
            self.order_id,
        )

    def charge(self) -> Published:
        return self._from(
            "bazaar/orders",
            payments.ChargePayment(
                payment_id=self.payment_id,
                user_id=self.user_id,
                payment_method_id=self.method_id,
                amount=self.total,
                currency="USD",
                reference_type="order",
                reference_id=self.order_id,
            ),
            self.payment_id,
        )

    def processing(self) -> Published:
        return self._from(
            "bazaar/payments", payments.PaymentProcessing(**self._payment()), self.payment_id
        )

    def paid(self) -> Published:
        return self._from(
            "bazaar/payments", payments.PaymentSucceeded(**self._payment()), self.payment_id
        )

    def declined(self) -> Published:
        return self._from(
            "bazaar/payments",
            payments.PaymentFailed(**self._payment(), failure_code="card_declined"),
            self.payment_id,
        )

    def committed(self) -> Iterator[Published]:
        yield self._from(
            "bazaar/orders", catalog.CommitStock(reservation_id=self.order_id), self.order_id
        )
        yield self._from(
            "bazaar/catalog", catalog.StockCommitted(reservation_id=self.order_id), self.order_id
        )

    def released(self) -> Iterator[Published]:
        yield self._from(
            "bazaar/orders",
            catalog.ReleaseStock(reservation_id=self.order_id, reason="payment_declined"),
            self.order_id,
        )
        yield self._from(
            "bazaar/catalog",
            catalog.StockReleased(reservation_id=self.order_id, reason="payment_declined"),
            self.order_id,
        )

    def confirmed(self) -> Published:
        return self._order(
            orders.OrderConfirmed(**self._fields("confirmed"), payment_id=self.payment_id)
        )

    def cancellation_requested(self) -> Published:
        return self._order(
            orders.OrderCancellationRequested(
                **self._fields("cancelling"),
                requested_by=str(self.user_id),
                reason="user_request",
            )
        )

    def cancelled(self, reason: str = "payment_declined") -> Published:
        return self._order(
            orders.OrderCancelled(
                **self._fields("cancelled"),
                reason=reason,
                payment_id=self.payment_id,
            )
        )

    def confirmed_flow(self) -> list[Published]:
        return [
            self.created(),
            *self.reserved(),
            self.charge(),
            self.paid(),
            *self.committed(),
            self.confirmed(),
        ]

    def declined_flow(self) -> list[Published]:
        return [
            self.created(),
            *self.reserved(),
            self.charge(),
            self.declined(),
            *self.released(),
            self.cancelled("payment_declined"),
        ]


@dataclass
class AuctionFlow:
    auction_id: uuid.UUID = field(default_factory=uuid.uuid4)
    seller_id: uuid.UUID = field(default_factory=uuid.uuid4)
    bidders: tuple[uuid.UUID, uuid.UUID] = field(
        default_factory=lambda: (uuid.uuid4(), uuid.uuid4())
    )
    payments: tuple[uuid.UUID, uuid.UUID] = field(
        default_factory=lambda: (uuid.uuid4(), uuid.uuid4())
    )
    clock: Clock = field(default_factory=Clock)
    price: int = 1000

    def _publish(
        self, body: Message, *, user_id: uuid.UUID, key: uuid.UUID | None = None, source: str = ""
    ) -> Published:
        return message(
            body,
            source=source or "bazaar/auctions",
            key=str(key or self.auction_id),
            at=self.clock.next(),
            correlation_id=str(self.auction_id),
            user_id=user_id,
        )

    def _fields(self, status: str) -> dict[str, object]:
        return {
            "auction_id": self.auction_id,
            "seller_id": self.seller_id,
            "status": status,
            "currency": "USD",
            "current_price": self.price,
            "ends_at": self.clock.start + timedelta(minutes=5),
            "occurred_at": self.clock.start + STEP * (self.clock.ticks + 1),
        }

    def _payment(self, index: int) -> dict[str, object]:
        return {
            "payment_id": self.payments[index],
            "user_id": self.bidders[index],
            "amount": self.price,
            "currency": "USD",
            "reference_type": "auction",
            "reference_id": self.auction_id,
            "occurred_at": self.clock.start + STEP * (self.clock.ticks + 1),
        }

    def created(self) -> list[Published]:
        return [
            self._publish(
                auctions.AuctionCreated(
                    **self._fields("scheduled"), title="Lamp", starting_price=500
                ),
                user_id=self.seller_id,
            ),
            self._publish(
                auctions.AuctionOpened(**self._fields("open")),
                user_id=self.seller_id,
            ),
        ]

    def bids(self) -> list[Published]:
        """Three bids: the first bidder, the second, the first again (who leads)."""
        published = []
        for sequence, (bidder, amount) in enumerate(
            [(self.bidders[1], 600), (self.bidders[0], 800), (self.bidders[1], 900)], start=1
        ):
            self.price = amount
            published.append(
                self._publish(
                    auctions.BidAccepted(
                        **self._fields("open"),
                        bid_id=uuid.uuid4(),
                        bidder_id=bidder,
                        amount=amount,
                        auto=False,
                        sequence=sequence,
                    ),
                    user_id=bidder,
                )
            )
        return published

    def closed(self) -> Published:
        return self._publish(
            auctions.AuctionClosed(
                **self._fields("closing"),
                winner_id=self.bidders[1],
                final_price=self.price,
                reserve_met=True,
            ),
            user_id=self.seller_id,
        )

    def attempt(self, index: int) -> list[Published]:
        """Settlement attempt ``index`` (0: the winner, 1: the next bidder) and its charge."""
        bidder = self.bidders[1 - index]
        return [
            self._publish(
                auctions.SettlementAttempted(
                    **self._fields("closing"),
                    bidder_id=bidder,
                    amount=self.price,
                    payment_id=self.payments[index],
                    attempt=index + 1,
                ),
                user_id=bidder,
            ),
            self._publish(
                payments.ChargePayment(
                    payment_id=self.payments[index],
                    user_id=bidder,
                    payment_method_id=uuid.uuid4(),
                    amount=self.price,
                    currency="USD",
                    reference_type="auction",
                    reference_id=self.auction_id,
                ),
                user_id=bidder,
                key=self.payments[index],
            ),
        ]

    def payment_failed(self, index: int) -> Published:
        bidder = self.bidders[1 - index]
        return self._publish(
            payments.PaymentFailed(
                **{**self._payment(1 - index), "payment_id": self.payments[index]},
                failure_code="insufficient_funds",
            ),
            user_id=bidder,
            key=self.payments[index],
            source="bazaar/payments",
        )

    def payment_succeeded(self, index: int) -> Published:
        bidder = self.bidders[1 - index]
        return self._publish(
            payments.PaymentSucceeded(
                **{**self._payment(1 - index), "payment_id": self.payments[index]}
            ),
            user_id=bidder,
            key=self.payments[index],
            source="bazaar/payments",
        )

    def settled(self, index: int) -> Published:
        return self._publish(
            auctions.AuctionSettled(
                **self._fields("settled"),
                winner_id=self.bidders[1 - index],
                final_price=self.price,
                payment_id=self.payments[index],
            ),
            user_id=self.seller_id,
        )

    def unsold(self, reason: str = "no_payable_bidder") -> Published:
        return self._publish(
            auctions.AuctionUnsold(**self._fields("unsold"), reason=reason),
            user_id=self.seller_id,
        )

    def settled_flow(self) -> list[Published]:
        """Bids, close, the winner's payment declined, the next bidder's paid, settled."""
        return [
            *self.created(),
            *self.bids(),
            self.closed(),
            *self.attempt(0),
            self.payment_failed(0),
            *self.attempt(1),
            self.payment_succeeded(1),
            self.settled(1),
        ]
