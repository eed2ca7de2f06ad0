"""The consumer loop: at-least-once delivery from Kafka, exactly-once effect.

Every service consumes the same way. A message is parsed as a CloudEvents
envelope and dispatched by its ``type`` through the service's handler table; the
handler runs in one transaction together with the inbox claim, so a redelivered
message changes nothing. A handler that keeps failing is retried with backoff,
then the message goes to the dead-letter topic (through the outbox, in the same
transaction as its inbox claim) and the partition moves on. Offsets are committed
after the batch that contained them was handled.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Mapping, Sequence

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import CommitFailedError, KafkaError
from prometheus_client import Counter, Gauge
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import transaction
from bazaar.kit.logging import get_logger
from bazaar.kit.messaging import inbox, outbox
from bazaar.kit.messaging.envelope import Envelope, new_envelope
from bazaar.kit.messaging.kafka import DEAD_LETTER_TOPIC, topic_name
from bazaar.kit.requestcontext import current_correlation_id, current_request_id
from bazaar.kit.telemetry import span, trace_id_of

log = get_logger(__name__)

Handler = Callable[[AsyncSession, Envelope], Awaitable[None]]

DEAD_LETTERED_TYPE = "bazaar.platform.message.dead_lettered"

MESSAGES_HANDLED = Counter(
    "bazaar_messages_handled_total",
    "Messages taken from Kafka, by consumer, type and outcome",
    ["consumer", "type", "outcome"],
)
CONSUMER_LAG = Gauge(
    "bazaar_consumer_lag_messages",
    "Messages behind the partition's end at the consumer's last fetch",
    ["consumer", "topic", "partition"],
)


class MessageConsumer:
    """Consumes ``topics`` in consumer group ``name`` and dispatches through ``handlers``."""

    def __init__(
        self,
        *,
        name: str,
        topics: Sequence[str],
        handlers: Mapping[str, Handler],
        sessions: async_sessionmaker[AsyncSession],
        settings: PlatformSettings,
        source: str,
        max_attempts: int = 5,
        first_backoff_seconds: float = 0.1,
    ) -> None:
        self.name = name
        self._topics = [topic_name(settings, topic) for topic in topics]
        self._handlers = dict(handlers)
        self._sessions = sessions
        self._settings = settings
        self._source = source
        self._max_attempts = max_attempts
        self._first_backoff = first_backoff_seconds
        self.assigned = asyncio.Event()

    async def run(self) -> None:
        backoff = 0.2
        while True:
            consumer = AIOKafkaConsumer(
                *self._topics,
                bootstrap_servers=self._settings.kafka_bootstrap_servers,
                group_id=f"{self._settings.topic_prefix}{self.name}",
                client_id=self.name,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                # A restarted broker (or a topic made late) must be noticed in seconds.
                metadata_max_age_ms=3000,
                session_timeout_ms=self._settings.kafka_session_timeout_ms,
                heartbeat_interval_ms=self._settings.kafka_heartbeat_interval_ms,
                max_poll_records=500,
            )
            try:
                await consumer.start()
                backoff = 0.2
                await self._consume(consumer)
            except asyncio.CancelledError:
                raise
            except KafkaError as exc:
                log.warning("consumer_restarting", consumer=self.name, error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self.assigned.clear()
                try:
                    await consumer.stop()
                except KafkaError as exc:
                    log.warning("consumer_stop_failed", consumer=self.name, error=repr(exc))

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            if consumer.assignment():
                self.assigned.set()
            if not batch:
                continue
            for partition, records in batch.items():
                for record in records:
                    await self.handle_record(record)
                highwater = consumer.highwater(partition)
                if highwater is not None:
                    CONSUMER_LAG.labels(self.name, partition.topic, partition.partition).set(
                        max(0, highwater - records[-1].offset - 1)
                    )
            try:
                await consumer.commit()
            except CommitFailedError as exc:
                # The group rebalanced: another member redelivers, and the inbox absorbs it.
                log.info("consumer_commit_skipped", consumer=self.name, error=repr(exc))

    async def handle_record(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Handle one record: parse, dispatch with retries, dead-letter when it keeps failing."""
        try:
            envelope = Envelope.from_bytes(record.value or b"")
        except ValidationError as exc:
            await self._dead_letter(record, None, f"not a CloudEvents envelope: {exc}")
            return
        handler = self._handlers.get(envelope.type)
        if handler is None:
            return
        current_correlation_id.set(envelope.correlationid)
        current_request_id.set(envelope.requestid)
        with span(f"handle {envelope.type}", envelope.traceparent, kind="consumer") as own:
            structlog.contextvars.bind_contextvars(
                correlation_id=envelope.correlationid,
                request_id=envelope.requestid,
                trace_id=trace_id_of(own),
                message_id=envelope.id,
            )
            await self._dispatch(record, envelope, handler)

    async def _dispatch(
        self, record: ConsumerRecord[bytes, bytes], envelope: Envelope, handler: Handler
    ) -> None:
        backoff = self._first_backoff
        for attempt in range(1, self._max_attempts + 1):
            try:
                async with transaction(self._sessions) as session:
                    if not await inbox.claim(session, self.name, envelope.id):
                        MESSAGES_HANDLED.labels(self.name, envelope.type, "duplicate").inc()
                        return
                    await handler(session, envelope)
                MESSAGES_HANDLED.labels(self.name, envelope.type, "handled").inc()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any handler failure is retried, then dead-lettered
                log.warning(
                    "message_handler_failed",
                    consumer=self.name,
                    type=envelope.type,
                    message_id=envelope.id,
                    attempt=attempt,
                    error=repr(exc),
                )
                if attempt == self._max_attempts:
                    await self._dead_letter(record, envelope, repr(exc))
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], envelope: Envelope | None, error: str
    ) -> None:
        message_id = (
            envelope.id if envelope else f"{record.topic}:{record.partition}:{record.offset}"
        )
        log.error("message_dead_lettered", consumer=self.name, message_id=message_id, error=error)
        dead = new_envelope(
            source=self._source,
            type=DEAD_LETTERED_TYPE,
            subject=message_id,
            correlation_id=envelope.correlationid if envelope else None,
            user_id=envelope.userid if envelope else None,
            data={
                "consumer": self.name,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "error": error[:2000],
                "original": envelope.model_dump(mode="json") if envelope else None,
                "original_raw": None
                if envelope
                else base64.b64encode(record.value or b"").decode(),
            },
        )
        async with transaction(self._sessions) as session:
            if await inbox.claim(session, self.name, message_id):
                await outbox.publish(session, DEAD_LETTER_TOPIC, dead, key=message_id)
        MESSAGES_HANDLED.labels(
            self.name, envelope.type if envelope else "unparsable", "dead_lettered"
        ).inc()
