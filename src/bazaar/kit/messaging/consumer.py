"""The consumer loop: at-least-once delivery from Kafka, exactly-once effect.

Every service consumes the same way. A message is parsed as a CloudEvents
envelope and dispatched by its ``type`` through the service's handler table; the
handler runs in one transaction together with the inbox claim, so a redelivered
message changes nothing. A handler that keeps failing is retried with backoff,
then the message goes to the dead-letter topic (through the outbox, in the same
transaction as its inbox claim) and the partition moves on. Offsets are committed
after the batch that contained them was handled (in the background: the loop goes on
while the broker takes them).

Under load a fetch brings several messages, and they are handled in one transaction:
one inbox claim for all of them (:func:`~bazaar.kit.messaging.inbox.claim_many`), each
new message's handler in turn on a clean identity map (as if in a session of its
own), one commit; the messages do not wait for each other's commits and round trips.
If a handler raises, the whole transaction is rolled back, so nothing of the batch
happened: the messages before the failing one are handled again as a batch, the
failing one alone with the per-message retries and dead-lettering above, and the rest
after it, in their order. Effect and inbox claim still commit together, so a message
has one effect whichever way it was handled. (In-process side effects of handlers,
such as metrics, may count twice for a batch that was rolled back.)

With ``concurrent_partitions`` the partitions of a fetch are handled side by side, a
transaction each: for handlers that lock only rows of their own entity, so that one
partition's transaction never waits on another's. ``max_batch_messages=1`` gives each
message a transaction of its own again (for handlers that lock shared rows, such as an
item's stock, which batches of different partitions could lock in opposite orders).

A topic shared by several sagas (payment outcomes of orders and of auctions) carries
messages each consumer must pass over: ``accepts`` says which envelopes are its own,
and the others are skipped as cheaply as types without a handler, before any
transaction.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
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
# At most this many messages are handled in one transaction (row locks are held until
# its commit).
MAX_BATCH_MESSAGES = 100
# While messages keep coming, offsets are committed at most this often; a fetch that
# comes back empty commits what is handled at once. A consumer that stops uncommitted
# has its last half second read again by the next owner, and the inbox absorbs it.
OFFSET_COMMIT_INTERVAL_SECONDS = 0.5

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
BATCHES_ROLLED_BACK = Counter(
    "bazaar_message_batches_rolled_back_total",
    "Batches of messages whose transaction was rolled back (a handler failed) and that "
    "were handled again, the failing message alone",
    ["consumer"],
)


@dataclass(frozen=True, slots=True)
class _Delivery:
    """A parsed message with the handler of its type."""

    record: ConsumerRecord[bytes, bytes]
    envelope: Envelope
    handler: Handler


class OffsetCommits:
    """Commits the offsets of handled messages in the background, one commit at a time.

    The loop does not wait for the broker's answer before it fetches and handles the
    next batch: the offsets of what is handled meanwhile go with the next commit. Only
    offsets of handled messages are ever committed (they are given explicitly, never
    the consumer's position, which a fetch may have moved past unhandled records); a
    commit that fails (a rebalance) leaves the messages to be read again, and the inbox
    absorbs them.

    Under a steady stream a commit after every fetch would be one broker request per
    message handled (each fetch brings one or two): the commits are spaced by
    ``interval`` seconds instead, and an idle consumer commits at once.
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        name: str,
        interval: float = OFFSET_COMMIT_INTERVAL_SECONDS,
    ) -> None:
        self._consumer = consumer
        self._name = name
        self._interval = interval
        self._handled: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._last_started = -math.inf

    def handled(self, partition: TopicPartition, next_offset: int) -> None:
        self._handled[partition] = max(next_offset, self._handled.get(partition, 0))

    @property
    def committing(self) -> bool:
        """Whether a commit is on its way to the broker."""
        return self._task is not None and not self._task.done()

    def commit_handled(self, *, idle: bool = False) -> bool:
        """Start committing what is handled, unless a commit is still on its way or (while
        messages keep coming, not ``idle``) the last one started less than the interval
        ago; whether it started one."""
        if not self._handled or self.committing:
            return False
        now = asyncio.get_running_loop().time()
        if not idle and now - self._last_started < self._interval:
            return False
        self._last_started = now
        offsets, self._handled = self._handled, {}
        self._task = asyncio.create_task(self._commit(offsets))
        return True

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assigned = self._consumer.assignment()
        mine = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not mine:
            return
        try:
            await self._consumer.commit(mine)
        except CommitFailedError as exc:
            # The group rebalanced: another member redelivers, and the inbox absorbs it.
            log.info("consumer_commit_skipped", consumer=self._name, error=repr(exc))
        except KafkaError as exc:
            log.warning("consumer_commit_failed", consumer=self._name, error=repr(exc))
            for partition, offset in mine.items():
                self._handled.setdefault(partition, offset)

    async def close(self) -> None:
        """The loop is ending: give the commit on its way, then what is left, a second
        each (what is not committed is read again, and the inbox absorbs it)."""
        if self._task is not None and not self._task.done():
            await asyncio.wait({self._task}, timeout=1.0)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._handled:
            offsets, self._handled = self._handled, {}
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._commit(offsets)


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
        fetch_max_wait_ms: int | None = None,
        max_batch_messages: int = MAX_BATCH_MESSAGES,
        concurrent_partitions: bool = False,
        accepts: Callable[[Envelope], bool] | None = None,
    ) -> None:
        self.name = name
        self._topics = [topic_name(settings, topic) for topic in topics]
        self._handlers = dict(handlers)
        self._sessions = sessions
        self._settings = settings
        self._source = source
        self._max_attempts = max_attempts
        self._first_backoff = first_backoff_seconds
        # None: the deployment's (PlatformSettings.kafka_fetch_max_wait_ms, which says why).
        self._fetch_max_wait_ms = (
            settings.kafka_fetch_max_wait_ms if fetch_max_wait_ms is None else fetch_max_wait_ms
        )
        self._max_batch = max(1, max_batch_messages)
        self._concurrent = concurrent_partitions
        self._accepts = accepts
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
                fetch_max_wait_ms=self._fetch_max_wait_ms,
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
        offsets = OffsetCommits(consumer, self.name)
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=500)
                if consumer.assignment():
                    self.assigned.set()
                if not batch:
                    offsets.commit_handled(idle=True)
                    continue
                if self._concurrent:
                    # Each partition in its order, side by side, a transaction each.
                    async with asyncio.TaskGroup() as group:
                        for records in batch.values():
                            group.create_task(self.handle_records(records))
                else:
                    # Partitions one after the other, each in its order: one transaction
                    # for what the fetch brought (see handle_records).
                    await self.handle_records(
                        [record for records in batch.values() for record in records]
                    )
                for partition, records in batch.items():
                    offsets.handled(partition, records[-1].offset + 1)
                    highwater = consumer.highwater(partition)
                    if highwater is not None:
                        CONSUMER_LAG.labels(self.name, partition.topic, partition.partition).set(
                            max(0, highwater - records[-1].offset - 1)
                        )
                offsets.commit_handled()
        finally:
            await offsets.close()

    async def handle_records(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Handle records (each partition's in its order) in as few transactions as the
        batch allows: one per :data:`MAX_BATCH_MESSAGES`, and around an unparsable one."""
        pending: list[_Delivery] = []
        for record in records:
            try:
                envelope = Envelope.from_bytes(record.value or b"")
            except ValidationError as exc:
                await self._handle_batch(pending)
                pending = []
                await self._dead_letter(record, None, f"not a CloudEvents envelope: {exc}")
                continue
            handler = self._handlers.get(envelope.type)
            if handler is None or (self._accepts is not None and not self._accepts(envelope)):
                # Not for this consumer: no effect, so no transaction and no inbox claim.
                continue
            pending.append(_Delivery(record, envelope, handler))
            if len(pending) >= self._max_batch:
                await self._handle_batch(pending)
                pending = []
        await self._handle_batch(pending)

    async def _handle_alone(self, delivery: _Delivery) -> None:
        envelope = delivery.envelope
        with self._message_context(envelope):
            await self._dispatch(delivery.record, envelope, delivery.handler)

    @contextlib.contextmanager
    def _message_context(self, envelope: Envelope) -> Iterator[None]:
        """The message's correlation, request and trace, for its handler and its logs."""
        current_correlation_id.set(envelope.correlationid)
        current_request_id.set(envelope.requestid)
        with span(f"handle {envelope.type}", envelope.traceparent, kind="consumer") as own:
            structlog.contextvars.bind_contextvars(
                correlation_id=envelope.correlationid,
                request_id=envelope.requestid,
                trace_id=trace_id_of(own),
                message_id=envelope.id,
            )
            yield

    async def _handle_batch(self, deliveries: Sequence[_Delivery]) -> None:
        """Handle ``deliveries`` (each partition's in its order) in one transaction; when a
        handler fails, as described in the module's docstring."""
        remaining = list(deliveries)
        while remaining:
            if len(remaining) == 1:
                await self._handle_alone(remaining[0])
                return
            failed_at = 0
            outcomes: list[tuple[str, str]] = []
            try:
                async with transaction(self._sessions) as session:
                    new = await inbox.claim_many(
                        session, self.name, [delivery.envelope.id for delivery in remaining]
                    )
                    for index, delivery in enumerate(remaining):
                        envelope = delivery.envelope
                        if envelope.id not in new:
                            outcomes.append((envelope.type, "duplicate"))
                            continue
                        # Repeats of one id within the batch: the first one counts.
                        new.discard(envelope.id)
                        failed_at = index
                        with self._message_context(envelope):
                            await delivery.handler(session, envelope)
                        # What the next handler reads comes from the database, not from
                        # objects this one loaded: as if each had a session of its own.
                        await session.flush()
                        session.expunge_all()
                        outcomes.append((envelope.type, "handled"))
                    failed_at = len(remaining)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the batch is handled again, the failing one alone
                BATCHES_ROLLED_BACK.labels(self.name).inc()
                failing = remaining[min(failed_at, len(remaining) - 1)]
                log.info(
                    "message_batch_rolled_back",
                    consumer=self.name,
                    messages=len(remaining),
                    failing_message_id=failing.envelope.id,
                    error=repr(exc),
                )
                if failed_at >= len(remaining):
                    # The commit itself failed: every message again, one at a time.
                    failed_at = 0
                await self._handle_batch(remaining[:failed_at])
                await self._handle_alone(remaining[failed_at])
                remaining = remaining[failed_at + 1 :]
                continue
            for message_type, outcome in outcomes:
                MESSAGES_HANDLED.labels(self.name, message_type, outcome).inc()
            return

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
