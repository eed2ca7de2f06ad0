"""A payment method's owner is asked of payments once per buyer and method while the
answer is fresh, and concurrent first checks share one question."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from bazaar.kit.errors import ServiceUnavailable
from bazaar.kit.payment_methods import PaymentMethodCheck
from bazaar.kit.testing import wait_for


class Directory:
    """Stands in for payments behind the gateway: counts the questions, answers when told."""

    def __init__(self, owners: dict[uuid.UUID, uuid.UUID]) -> None:
        self.owners = owners
        self.asked = 0
        self.answer = asyncio.Event()
        self.answer.set()
        self.down = False

    async def owner_of(self, method_id: uuid.UUID) -> uuid.UUID | None:
        self.asked += 1
        await self.answer.wait()
        if self.down:
            raise ServiceUnavailable("payments is down")
        return self.owners.get(method_id)


async def test_a_confirmed_pair_is_asked_once_while_fresh_and_again_after() -> None:
    card, buyer = uuid.uuid4(), uuid.uuid4()
    directory = Directory({card: buyer})
    now = [1000.0]
    check = PaymentMethodCheck(directory, ttl_seconds=60, clock=lambda: now[0])

    assert await check.owns(buyer, card)
    now[0] += 59
    assert await check.owns(buyer, card)
    assert directory.asked == 1

    del directory.owners[card]  # deleted meanwhile
    now[0] += 2
    assert not await check.owns(buyer, card)
    assert directory.asked == 2


async def test_another_buyers_method_and_an_unknown_one_are_refused_every_time() -> None:
    card, owner = uuid.uuid4(), uuid.uuid4()
    directory = Directory({card: owner})
    check = PaymentMethodCheck(directory, ttl_seconds=60)

    assert not await check.owns(uuid.uuid4(), card)
    assert not await check.owns(owner, uuid.uuid4())
    assert not await check.owns(uuid.uuid4(), card)
    assert directory.asked == 3


async def test_concurrent_first_checks_share_one_question() -> None:
    card, buyer = uuid.uuid4(), uuid.uuid4()
    directory = Directory({card: buyer})
    directory.answer.clear()
    check = PaymentMethodCheck(directory, ttl_seconds=60)

    checks = [asyncio.create_task(check.owns(buyer, card)) for _ in range(5)]
    # Every check has started (they all run while this waits) before payments answers.
    await wait_for(lambda: directory.asked >= 1, message="the first question")
    directory.answer.set()
    assert await asyncio.gather(*checks) == [True] * 5
    assert directory.asked == 1


async def test_payments_down_is_said_not_taken_for_a_refusal() -> None:
    directory = Directory({})
    directory.down = True
    check = PaymentMethodCheck(directory, ttl_seconds=60)
    with pytest.raises(ServiceUnavailable):
        await check.owns(uuid.uuid4(), uuid.uuid4())


async def test_without_a_directory_every_method_is_the_buyers() -> None:
    assert await PaymentMethodCheck(None, ttl_seconds=60).owns(uuid.uuid4(), uuid.uuid4())
