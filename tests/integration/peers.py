"""Playing another service's part on the real broker: send its messages, watch its topics.

A service under test talks to the others only through Kafka (and the gateway). Until a
test runs the real other service, it plays that service here: :func:`send` puts
messages on a topic exactly as a relay would (CloudEvents envelopes, keyed by the
entity), and a :class:`TopicWatcher` collects everything published on some topics
during the test, so the test can wait for a command or an event with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bazaar.contracts import payments
from bazaar.contracts.base import Message
from bazaar.kit.config import PlatformSettings
from bazaar.kit.messaging.envelope import Envelope, new_envelope
from bazaar.kit.messaging.kafka import ensure_topics, topic_name
from bazaar.kit.testing import wait_for


def envelope_of(
    message: Message,
    *,
    key: str,
    source: str = "bazaar/test-peer",
    correlation_id: str | None = None,
    user_id: str | None = None,
) -> Envelope:
    return new_envelope(
        source=source,
        type=message.TYPE,
        subject=key,
        data=message,
        correlation_id=correlation_id,
        user_id=user_id,
        dataschema=message.dataschema(),
    )


async def send(
    platform: PlatformSettings, topic: str, envelopes: Iterable[Envelope], *, key: str
) -> None:
    """Publish ``envelopes`` (in order) on ``topic`` (the contract's name) keyed by ``key``."""
    producer = AIOKafkaProducer(bootstrap_servers=platform.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for envelope in envelopes:
            await producer.send_and_wait(
                topic_name(platform, topic), value=envelope.to_bytes(), key=key.encode()
            )
    finally:
        await producer.stop()


def payment_outcome(
    charge: payments.ChargePayment, outcome: str, **extra: Any
) -> payments.PaymentOutcome:
    """The event payments publishes about ``charge``: ``succeeded``, ``failed`` (give a
    ``failure_code``), ``refunded`` (of the whole amount unless told), ``cancelled`` or
    ``processing``."""
    kinds: dict[str, type[payments.PaymentOutcome]] = {
        "succeeded": payments.PaymentSucceeded,
        "failed": payments.PaymentFailed,
        "refunded": payments.PaymentRefunded,
        "cancelled": payments.PaymentCancelled,
        "processing": payments.PaymentProcessing,
    }
    if outcome == "refunded":
        extra.setdefault("refunded_amount", charge.amount)
    return kinds[outcome](
        payment_id=charge.payment_id,
        user_id=charge.user_id,
        amount=charge.amount,
        currency=charge.currency,
        reference_type=charge.reference_type,
        reference_id=charge.reference_id,
        occurred_at=datetime.now(UTC),
        **extra,
    )


class TopicWatcher:
    """Everything published on some topics since the watcher started, read in the background."""

    def __init__(self, platform: PlatformSettings, topics: Sequence[str]) -> None:
        self._platform = platform
        self._topics = list(topics)
        self.seen: list[Envelope] = []

    @asynccontextmanager
    async def running(self) -> AsyncIterator[TopicWatcher]:
        await ensure_topics(self._platform, self._topics)
        consumer = AIOKafkaConsumer(
            *(topic_name(self._platform, topic) for topic in self._topics),
            bootstrap_servers=self._platform.kafka_bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            metadata_max_age_ms=1000,
        )
        await consumer.start()
        task = asyncio.create_task(self._collect(consumer))
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await consumer.stop()

    async def _collect(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            for records in batch.values():
                self.seen.extend(Envelope.from_bytes(record.value) for record in records)

    def of_type(self, message: type[Message], subject: str | None = None) -> list[Envelope]:
        return [
            envelope
            for envelope in self.seen
            if envelope.type == message.TYPE and (subject is None or envelope.subject == subject)
        ]

    async def wait_for(
        self,
        message: type[Message],
        *,
        subject: str | None = None,
        count: int = 1,
        where: Callable[[Envelope], bool] = lambda _: True,
        timeout: float = 15.0,
    ) -> list[Envelope]:
        """Wait until at least ``count`` messages of this type (about ``subject``) matching
        ``where`` were published; returns all of them."""

        def matching() -> list[Envelope] | None:
            found = [envelope for envelope in self.of_type(message, subject) if where(envelope)]
            return found if len(found) >= count else None

        return await wait_for(
            matching, timeout=timeout, message=f"{count} x {message.TYPE} about {subject}"
        )
