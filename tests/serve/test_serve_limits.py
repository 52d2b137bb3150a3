"""Unit tests of the server's admission control (facegan.serve.limits), in-process; the request guard's
are in tests/serve/test_serve_guard.py."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from facegan.errors import FaceganError
from facegan.serve.limits import CostBudget, OverBudget, ServeLimits, client_key, image_cost


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 10))  # bounded: a bug in the queue must not hang the suite


def test_client_key_groups_ipv6_by_64_and_unmaps_ipv4() -> None:
    assert client_key("203.0.113.7") == "203.0.113.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert client_key(None) == "unknown"


def test_image_cost_counts_output_pixels_but_never_fewer_than_native() -> None:
    assert image_cost(60, 512, 64) == pytest.approx(60 * 512 * 512 / 1e6)
    assert image_cost(1, 32, 64) == image_cost(1, 64, 64)


def test_a_client_over_its_share_is_refused_at_once_others_are_not() -> None:
    async def main() -> None:
        budget = CostBudget(total=10, per_client=4, max_wait=5)
        async with budget.admit("a", 3):
            with pytest.raises(OverBudget) as err:
                async with budget.admit("a", 2):
                    pass
            assert err.value.retry_after == 1
            async with budget.admit("b", 4):
                assert budget.used == 7
            async with budget.admit("a", 1):  # what is left of a's share
                pass
        assert budget.used == 0 and budget.clients == 0

    run(main())


def test_oversized_requests_run_alone_as_one_clients_share() -> None:
    async def main() -> None:
        budget = CostBudget(total=8, per_client=4, max_wait=0)
        async with budget.admit("a", 1000):
            assert budget.used == 4
        assert budget.used == 0

    run(main())


def test_shared_budget_queues_in_order_then_times_out() -> None:
    async def main() -> None:
        budget = CostBudget(total=4, per_client=4, max_wait=0.3)
        order: list[str] = []
        release = asyncio.Event()

        async def hold(client: str, cost: float) -> None:
            async with budget.admit(client, cost):
                order.append(client)
                await release.wait()

        first = asyncio.create_task(hold("a", 3))
        await asyncio.sleep(0)
        second = asyncio.create_task(hold("b", 2))  # waits: 3 + 2 > 4
        third = asyncio.create_task(hold("c", 1))  # fits, but must not overtake b
        await asyncio.sleep(0.05)
        assert order == ["a"]
        release.set()
        await asyncio.gather(first, second, third)
        assert order == ["a", "b", "c"]

        async with budget.admit("a", 4):
            t0 = asyncio.get_running_loop().time()
            with pytest.raises(OverBudget, match="busy") as err:
                async with budget.admit("b", 1):
                    pass
            assert asyncio.get_running_loop().time() - t0 >= 0.25
            assert err.value.retry_after == 1
        assert budget.used == 0 and budget.clients == 0

    run(main())


def test_a_cancelled_waiter_leaves_the_queue_and_unblocks_the_rest() -> None:
    async def main() -> None:
        budget = CostBudget(total=4, per_client=4, max_wait=5)
        release = asyncio.Event()

        async def hold(client: str, cost: float) -> None:
            async with budget.admit(client, cost):
                await release.wait()

        holder = asyncio.create_task(hold("a", 3))
        await asyncio.sleep(0)
        big = asyncio.create_task(hold("b", 4))  # head of the queue
        small = asyncio.create_task(hold("c", 1))  # fits now, but queued behind b
        await asyncio.sleep(0.05)
        big.cancel()  # b's client went away
        await asyncio.sleep(0.05)
        assert budget.used == 4 and not small.done()  # c got in once b left
        release.set()
        await asyncio.gather(holder, small)
        with pytest.raises(asyncio.CancelledError):
            await big
        assert budget.used == 0 and budget.clients == 0

    run(main())


def test_limits_are_validated() -> None:
    with pytest.raises(FaceganError, match="client-budget-mpix"):
        ServeLimits(budget_mpix=8, client_budget_mpix=16)
    with pytest.raises(FaceganError, match="header-timeout"):
        ServeLimits(header_timeout=0)
    with pytest.raises(FaceganError, match="forwarded-allow-ips"):
        ServeLimits(forwarded_allow_ips=("not-an-ip",))
    with pytest.raises(FaceganError, match="requests-per-client"):
        ServeLimits(requests_per_client=-1)
    with pytest.raises(FaceganError, match="requests-in-flight"):
        ServeLimits(requests_in_flight=0)


def test_head_limits_are_validated() -> None:
    for name in ("max_target", "max_header_bytes", "max_headers"):
        with pytest.raises(FaceganError, match=name.replace("_", "-")):
            ServeLimits(**{name: 0})
