"""Stock commands from the order saga: reserve all or nothing, commit, release, expire.

The catalog runs in this process with its consumer and reaper; the test plays the
order saga on the real broker (commands on ``bazaar.catalog.commands``, answers read
from ``bazaar.catalog``) and checks stock through the public HTTP API.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.catalog import repository, service
from bazaar.catalog.app import create_app
from bazaar.catalog.models import Item, StockReservation
from bazaar.catalog.settings import CatalogSettings
from bazaar.contracts import catalog as contract
from bazaar.contracts.base import Message
from bazaar.contracts.topics import ALL_TOPICS
from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import create_engine, create_session_factory, transaction
from bazaar.kit.messaging.envelope import Envelope
from bazaar.kit.messaging.kafka import ensure_topics
from bazaar.kit.testing import DatabaseFactory, TokenIssuer, running_app, wait_for
from tests.integration.peers import TopicWatcher, envelope_of, send

ITEMS = "/api/catalog/items"


@dataclass
class StockDesk:
    """The catalog under test, and the saga's side of the conversation."""

    client: httpx.AsyncClient
    platform: PlatformSettings
    replies: TopicWatcher
    database: URL
    seller_headers: dict[str, str]

    async def new_item(self, stock: int | None = 5, **fields: Any) -> str:
        body = {"kind": "good", "title": "Teapot", "price": 1500, "currency": "EUR"}
        body.update(stock=stock, **fields)
        response = await self.client.post(ITEMS, json=body, headers=self.seller_headers)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def stock_of(self, item_id: str) -> int | None:
        response = await self.client.get(f"{ITEMS}/{item_id}")
        stock: int | None = response.json()["stock"]
        return stock

    async def command(self, message: Message, reservation_id: uuid.UUID) -> Envelope:
        envelope = envelope_of(message, key=str(reservation_id), correlation_id=str(reservation_id))
        await send(self.platform, contract.COMMANDS_TOPIC, [envelope], key=str(reservation_id))
        return envelope

    async def answer(
        self, reservation_id: uuid.UUID, *types: type[Message], count: int = 1
    ) -> list[Envelope]:
        """The answers about this reservation once ``count`` of the given types arrived."""
        wanted = {message.TYPE for message in types}
        await wait_for(
            lambda: len([e for e in self._about(reservation_id) if e.type in wanted]) >= count,
            timeout=15,
            message=f"{count} answers {wanted} for {reservation_id}",
        )
        return [e for e in self._about(reservation_id) if e.type in wanted]

    def _about(self, reservation_id: uuid.UUID) -> list[Envelope]:
        return [e for e in self.replies.seen if e.subject == str(reservation_id)]


@pytest.fixture
async def desk(
    database_factory: DatabaseFactory,
    platform_settings: PlatformSettings,
    token_issuer: TokenIssuer,
) -> AsyncIterator[StockDesk]:
    await ensure_topics(platform_settings, ALL_TOPICS)
    url = await database_factory.create("bazaar.catalog")
    settings = CatalogSettings(
        database_url=url.render_as_string(hide_password=False),
        reservation_reaper_interval_seconds=0.1,
    )
    watcher = TopicWatcher(platform_settings, [contract.TOPIC])
    async with running_app(create_app(settings, platform_settings)) as client, watcher.running():
        yield StockDesk(
            client, platform_settings, watcher, url, token_issuer.headers(roles=["seller"])
        )


def reserve(
    reservation_id: uuid.UUID, *lines: tuple[str, int], hold: int = 900
) -> contract.ReserveStock:
    return contract.ReserveStock(
        reservation_id=reservation_id,
        lines=[contract.StockLine(item_id=uuid.UUID(item), quantity=q) for item, q in lines],
        hold_seconds=hold,
    )


async def test_a_reservation_holds_every_line_and_answers_the_same_when_asked_again(
    desk: StockDesk,
) -> None:
    teapot, cups = await desk.new_item(stock=5), await desk.new_item(stock=10)
    unlimited = await desk.new_item(stock=None, kind="service", title="Gift wrapping")
    reservation = uuid.uuid4()
    command = reserve(reservation, (teapot, 2), (cups, 4), (unlimited, 3))

    first = await desk.command(command, reservation)
    [reserved] = await desk.answer(reservation, contract.StockReserved)
    assert reserved.correlationid == str(reservation)
    assert {(line["item_id"], line["quantity"]) for line in reserved.data["lines"]} == {
        (teapot, 2),
        (cups, 4),
        (unlimited, 3),
    }
    assert (await desk.stock_of(teapot), await desk.stock_of(cups)) == (3, 6)
    assert await desk.stock_of(unlimited) is None

    # The saga's retry (a new message) and a redelivery (the same message) change nothing.
    await desk.command(command, reservation)
    await send(desk.platform, contract.COMMANDS_TOPIC, [first], key=str(reservation))
    answers = await desk.answer(reservation, contract.StockReserved, count=2)
    assert answers[1].data == answers[0].data
    await desk.command(contract.CommitStock(reservation_id=reservation), reservation)
    await desk.answer(reservation, contract.StockCommitted)
    assert len(desk._about(reservation)) == 3  # the redelivered message got no answer
    assert (await desk.stock_of(teapot), await desk.stock_of(cups)) == (3, 6)


async def test_a_reservation_that_cannot_be_met_takes_nothing(desk: StockDesk) -> None:
    plenty, scarce = await desk.new_item(stock=10), await desk.new_item(stock=1)
    reservation = uuid.uuid4()
    command = reserve(reservation, (plenty, 3), (scarce, 2))
    await desk.command(command, reservation)
    [refused] = await desk.answer(reservation, contract.StockReservationRefused)
    assert refused.data["reason"] == "out_of_stock"
    assert refused.data["item_id"] == scarce
    assert (await desk.stock_of(plenty), await desk.stock_of(scarce)) == (10, 1)

    # Stock arriving later does not turn the same reservation into a success.
    await desk.client.patch(f"{ITEMS}/{scarce}", json={"stock": 50}, headers=desk.seller_headers)
    await desk.command(command, reservation)
    answers = await desk.answer(reservation, contract.StockReservationRefused, count=2)
    assert answers[1].data == refused.data
    assert await desk.stock_of(plenty) == 10


async def test_withdrawn_and_unknown_items_are_unavailable(desk: StockDesk) -> None:
    withdrawn = await desk.new_item(stock=5)
    await desk.client.patch(
        f"{ITEMS}/{withdrawn}", json={"active": False}, headers=desk.seller_headers
    )
    first, second = uuid.uuid4(), uuid.uuid4()
    await desk.command(reserve(first, (withdrawn, 1)), first)
    await desk.command(reserve(second, (str(uuid.uuid4()), 1)), second)
    for reservation in (first, second):
        [refused] = await desk.answer(reservation, contract.StockReservationRefused)
        assert refused.data["reason"] == "item_unavailable"
    assert await desk.stock_of(withdrawn) == 5


async def test_release_returns_held_and_sold_units_and_always_answers(desk: StockDesk) -> None:
    item = await desk.new_item(stock=5)
    held, sold, never = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await desk.command(reserve(held, (item, 1)), held)
    await desk.command(reserve(sold, (item, 2)), sold)
    await desk.answer(held, contract.StockReserved)
    await desk.answer(sold, contract.StockReserved)
    await desk.command(contract.CommitStock(reservation_id=sold), sold)
    await desk.answer(sold, contract.StockCommitted)
    assert await desk.stock_of(item) == 2

    for reservation in (held, sold, never):
        release = contract.ReleaseStock(reservation_id=reservation, reason="order_cancelled")
        await desk.command(release, reservation)
        await desk.command(release, reservation)
        released = await desk.answer(reservation, contract.StockReleased, count=2)
        assert released[0].data["reason"] == "order_cancelled"
    assert await desk.stock_of(item) == 5  # each unit came back once


async def test_expired_holds_come_back_and_a_late_commit_takes_them_again(
    desk: StockDesk,
) -> None:
    item = await desk.new_item(stock=3)
    reservation = uuid.uuid4()
    await desk.command(reserve(reservation, (item, 2), hold=1), reservation)
    await desk.answer(reservation, contract.StockReserved)
    assert await desk.stock_of(item) == 1
    await wait_for(lambda: _stock_is(desk, item, 3), timeout=10, message="expired hold back")
    assert await _statuses(desk, reservation) == {"expired"}

    await desk.command(contract.CommitStock(reservation_id=reservation), reservation)
    await desk.answer(reservation, contract.StockCommitted)
    assert await desk.stock_of(item) == 1
    assert await _statuses(desk, reservation) == {"committed"}


async def test_a_late_commit_of_units_sold_meanwhile_is_not_answered(desk: StockDesk) -> None:
    item = await desk.new_item(stock=1)
    late, other = uuid.uuid4(), uuid.uuid4()
    await desk.command(reserve(late, (item, 1), hold=1), late)
    await desk.answer(late, contract.StockReserved)
    await wait_for(lambda: _stock_is(desk, item, 1), timeout=10, message="expired hold back")
    await desk.command(reserve(other, (item, 1)), other)
    await desk.answer(other, contract.StockReserved)

    await desk.command(contract.CommitStock(reservation_id=late), late)
    # The release sent after it is answered, so the commit was handled (and refused) first.
    await desk.command(contract.ReleaseStock(reservation_id=late, reason="timeout"), late)
    await desk.answer(late, contract.StockReleased)
    assert desk.replies.of_type(contract.StockCommitted, str(late)) == []
    assert await desk.stock_of(item) == 0


async def test_twenty_buyers_racing_for_five_units_get_exactly_five(
    desk: StockDesk, platform_settings: PlatformSettings
) -> None:
    """Two catalog replicas share the database and the consumer group, so commands on
    different partitions really run side by side.

    The commands go out once the second replica holds partitions, i.e. once the group's
    rebalance is over: this test is about the race for stock, not about a rebalance
    (the fault tests kill and restart consumers mid-run)."""
    item = await desk.new_item(stock=5)
    settings = CatalogSettings(database_url=desk.database.render_as_string(hide_password=False))
    second = create_app(settings, platform_settings)
    async with running_app(second):
        await wait_for(
            second.state.stock_consumer.assigned.is_set,
            timeout=30,
            message="the second replica's partitions",
        )
        buyers = [uuid.uuid4() for _ in range(20)]
        await asyncio.gather(*(desk.command(reserve(buyer, (item, 1)), buyer) for buyer in buyers))
        answers = [
            (await desk.answer(b, contract.StockReserved, contract.StockReservationRefused))[0]
            for b in buyers
        ]
    reserved = [a for a in answers if a.type == contract.StockReserved.TYPE]
    refused = [a for a in answers if a.type == contract.StockReservationRefused.TYPE]
    assert len(reserved) == 5
    assert len(refused) == 15
    assert {a.data["reason"] for a in refused} == {"out_of_stock"}
    assert await desk.stock_of(item) == 0


async def test_concurrent_reservations_never_oversell_and_never_deadlock(
    desk: StockDesk,
) -> None:
    """Twenty transactions at once, each wanting units of the same three items listed in
    different orders: exactly the stock there is gets sold, and none deadlocks."""
    items = [await desk.new_item(stock=5) for _ in range(3)]
    engine = create_engine(desk.database, pool_size=20)
    sessions = create_session_factory(engine)

    async def buy(n: int) -> None:
        order = items if n % 2 else list(reversed(items))
        reservation = uuid.uuid4()
        async with transaction(sessions) as session:
            await service.reserve_stock(
                session, reserve(reservation, *((i, 1) for i in order)), now=datetime.now(UTC)
            )

    try:
        await asyncio.gather(*(buy(n) for n in range(20)))
        async with sessions() as session:
            lines = (await session.execute(select(StockReservation))).scalars().all()
    finally:
        await engine.dispose()
    assert len(lines) == 15  # five reservations of three lines each
    assert [await desk.stock_of(item) for item in items] == [0, 0, 0]


@pytest.fixture
async def sessions(desk: StockDesk) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the catalog's database, for commands run side by side in this process."""
    engine = create_engine(desk.database, pool_size=25)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


async def test_the_same_reservation_asked_many_times_at_once_is_held_once(
    desk: StockDesk, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Copies of one command in transactions of their own (as during a rebalance): the
    units are taken once and every copy gets the same answer."""
    teapot, cups = await desk.new_item(stock=5), await desk.new_item(stock=10)
    reservation = uuid.uuid4()
    command = reserve(reservation, (cups, 4), (teapot, 2))

    await asyncio.gather(*(_reserve_in(sessions, command) for _ in range(10)))
    answers = await desk.answer(reservation, contract.StockReserved, count=10)
    assert all(answer.data == answers[0].data for answer in answers)
    assert (await desk.stock_of(teapot), await desk.stock_of(cups)) == (3, 6)
    assert await _statuses(desk, reservation) == {"held"}


async def test_a_refusal_and_stock_arriving_at_once_still_give_one_answer(
    desk: StockDesk, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Copies of a command that is refused, or not, depending on stock that arrives while
    they run: whichever it is, all copies answer the same and the stock agrees."""
    for _ in range(3):
        item = await desk.new_item(stock=1)
        reservation = uuid.uuid4()
        command = reserve(reservation, (item, 2))

        copies = [_reserve_in(sessions, command) for _ in range(10)]
        await asyncio.gather(*copies[:5], _restock(sessions, item, 5), *copies[5:])
        answers = await desk.answer(
            reservation, contract.StockReserved, contract.StockReservationRefused, count=10
        )
        assert all((a.type, a.data) == (answers[0].type, answers[0].data) for a in answers)
        if answers[0].type == contract.StockReserved.TYPE:
            assert await desk.stock_of(item) == 4
            assert await _statuses(desk, reservation) == {"held"}
        else:
            assert await desk.stock_of(item) == 6
            assert await _statuses(desk, reservation) == set()


async def test_a_copy_that_finds_stock_while_another_is_being_refused_is_refused_too(
    desk: StockDesk,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The refusing copy holds the item row from its look-up to its commit, so a copy that
    comes along once stock arrived waits, then finds the refusal (the interleaving made
    on purpose: the first refusal pauses before it is written)."""
    item = await desk.new_item(stock=1)
    reservation = uuid.uuid4()
    command = reserve(reservation, (item, 2))
    paused, resume = asyncio.Event(), asyncio.Event()
    add_refusal = repository.add_refusal

    async def add_refusal_slowly(*args: Any) -> None:
        if not paused.is_set():
            paused.set()
            await resume.wait()
        await add_refusal(*args)

    monkeypatch.setattr(repository, "add_refusal", add_refusal_slowly)
    first = asyncio.create_task(_reserve_in(sessions, command))
    await asyncio.wait_for(paused.wait(), timeout=10)
    others = asyncio.gather(_restock(sessions, item, 5), _reserve_in(sessions, command))
    await wait_for(
        lambda: _lock_waiters(sessions, 2), timeout=10, message="both waiting on the item row"
    )
    resume.set()
    await first
    await others
    answers = await desk.answer(
        reservation, contract.StockReserved, contract.StockReservationRefused, count=2
    )
    assert [a.type for a in answers] == [contract.StockReservationRefused.TYPE] * 2
    assert answers[0].data == answers[1].data
    assert await desk.stock_of(item) == 6


async def test_a_commit_asked_again_answers_again_and_one_after_a_release_is_refused(
    desk: StockDesk,
) -> None:
    item = await desk.new_item(stock=5)
    reservation = uuid.uuid4()
    await desk.command(reserve(reservation, (item, 2)), reservation)
    await desk.answer(reservation, contract.StockReserved)
    for _ in range(2):
        await desk.command(contract.CommitStock(reservation_id=reservation), reservation)
    await desk.answer(reservation, contract.StockCommitted, count=2)
    assert await desk.stock_of(item) == 3
    assert await _statuses(desk, reservation) == {"committed"}

    release = contract.ReleaseStock(reservation_id=reservation, reason="order_cancelled")
    await desk.command(release, reservation)
    await desk.command(contract.CommitStock(reservation_id=reservation), reservation)
    await desk.command(release, reservation)
    await desk.answer(reservation, contract.StockReleased, count=2)
    assert len(desk.replies.of_type(contract.StockCommitted, str(reservation))) == 2
    assert await desk.stock_of(item) == 5
    assert await _statuses(desk, reservation) == {"released"}


async def test_a_commit_finding_one_line_expired_takes_it_again_or_changes_nothing(
    desk: StockDesk, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A reaper's batch may end between two lines of one reservation: the commit sells
    all lines (taking the expired one's units again) or none."""
    for units_left in (True, False):
        first, second = sorted([await desk.new_item(stock=5), await desk.new_item(stock=5)])
        reservation = uuid.uuid4()
        async with transaction(sessions) as session:
            await service.reserve_stock(
                session, reserve(reservation, (first, 1), (second, 2)), now=datetime.now(UTC)
            )
            # What the reaper does to one line: its units back, the line expired.
            await session.execute(
                update(StockReservation)
                .where(
                    StockReservation.reservation_id == reservation,
                    StockReservation.item_id == uuid.UUID(second),
                )
                .values(status="expired")
            )
            await session.execute(
                update(Item)
                .where(Item.id == uuid.UUID(second))
                .values(stock=Item.stock + 2 if units_left else 1)
            )
        async with transaction(sessions) as session:
            await service.commit_stock(
                session, contract.CommitStock(reservation_id=reservation), now=datetime.now(UTC)
            )
        if units_left:
            await desk.answer(reservation, contract.StockCommitted)
            assert await _statuses(desk, reservation) == {"committed"}
            assert (await desk.stock_of(first), await desk.stock_of(second)) == (4, 3)
        else:
            assert await _line_statuses(desk, reservation) == {
                first: "held",
                second: "expired",
            }
            assert (await desk.stock_of(first), await desk.stock_of(second)) == (4, 1)
            assert desk.replies.of_type(contract.StockCommitted, str(reservation)) == []


async def test_a_commit_and_a_release_at_once_return_the_units_once(
    desk: StockDesk, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Whichever runs first (the commit sold the units and the release takes them back,
    or the release took them back and the commit is refused), the stock ends where it
    started and every line is released."""
    items = [await desk.new_item(stock=10) for _ in range(3)]
    reservations = [uuid.uuid4() for _ in range(6)]
    for n, reservation in enumerate(reservations):
        order = items if n % 2 else list(reversed(items))
        async with transaction(sessions) as session:
            await service.reserve_stock(
                session, reserve(reservation, *((i, 1) for i in order)), now=datetime.now(UTC)
            )

    async def handle(message: Message) -> None:
        async with transaction(sessions) as session:
            if isinstance(message, contract.CommitStock):
                await service.commit_stock(session, message, now=datetime.now(UTC))
            else:
                assert isinstance(message, contract.ReleaseStock)
                await service.release_stock(session, message, now=datetime.now(UTC))

    await asyncio.gather(
        *(
            handle(message)
            for reservation in reservations
            for message in (
                contract.CommitStock(reservation_id=reservation),
                contract.ReleaseStock(reservation_id=reservation, reason="timeout"),
            )
        )
    )
    assert [await desk.stock_of(item) for item in items] == [10, 10, 10]
    for reservation in reservations:
        assert await _statuses(desk, reservation) == {"released"}


async def test_items_are_looked_up_by_ids_withdrawn_ones_included(desk: StockDesk) -> None:
    first, second = await desk.new_item(title="First"), await desk.new_item(title="Second")
    await desk.client.patch(
        f"{ITEMS}/{second}", json={"active": False}, headers=desk.seller_headers
    )
    unknown = str(uuid.uuid4())
    page = (await desk.client.get(ITEMS, params={"ids": f"{second},{unknown},{first}"})).json()
    assert [(i["id"], i["active"]) for i in page["items"]] == [(second, False), (first, True)]
    assert page["next_cursor"] is None

    too_many = ",".join(str(uuid.uuid4()) for _ in range(101))
    for bad in (too_many, "not-a-uuid", ","):
        response = await desk.client.get(ITEMS, params={"ids": bad})
        assert response.status_code == 422, bad
        assert response.json()["errors"][0]["field"] == "ids"


async def _reserve_in(
    sessions: async_sessionmaker[AsyncSession], command: contract.ReserveStock
) -> None:
    async with transaction(sessions) as session:
        await service.reserve_stock(session, command, now=datetime.now(UTC))


async def _restock(sessions: async_sessionmaker[AsyncSession], item: str, units: int) -> None:
    async with transaction(sessions) as session:
        await session.execute(
            update(Item).where(Item.id == uuid.UUID(item)).values(stock=Item.stock + units)
        )


async def _lock_waiters(sessions: async_sessionmaker[AsyncSession], wanted: int) -> bool:
    """Whether ``wanted`` transactions on the catalog's database wait for a lock."""
    async with sessions() as session:
        waiting = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return (waiting or 0) >= wanted


async def _stock_is(desk: StockDesk, item: str, expected: int) -> bool:
    return await desk.stock_of(item) == expected


async def _statuses(desk: StockDesk, reservation: uuid.UUID) -> set[str]:
    return set((await _line_statuses(desk, reservation)).values())


async def _line_statuses(desk: StockDesk, reservation: uuid.UUID) -> dict[str, str]:
    engine = create_engine(desk.database, pooled=False)
    try:
        async with create_session_factory(engine)() as session:
            rows = await session.execute(
                select(StockReservation.item_id, StockReservation.status).where(
                    StockReservation.reservation_id == reservation
                )
            )
            return {str(item_id): status for item_id, status in rows}
    finally:
        await engine.dispose()
