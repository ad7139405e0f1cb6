"""Creating a store is safe from any number of processes at once: two `escrow serve` workers, or
a backend and `escrow projections run`, started together on a new PostgreSQL schema."""

from __future__ import annotations

import multiprocessing
from multiprocessing.queues import Queue

import pytest

from escrow.commands import CreateOrder, Escrow

PROCESSES = 4


def _open(url: str, answers: Queue[str]) -> None:
    try:
        with Escrow(url):
            answers.put("opened")
    except Exception as e:  # the answer the test reads; the failure is in its text
        answers.put(f"{type(e).__name__}: {e}")


@pytest.mark.parametrize("round_", range(3))
def test_processes_opening_a_new_postgres_store_at_once_all_succeed(
    pg_schema_url: str, round_: int
) -> None:
    context = multiprocessing.get_context("fork")
    answers: Queue[str] = context.Queue()
    workers = [
        context.Process(target=_open, args=(pg_schema_url, answers)) for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert sorted(answers.get(timeout=5) for _ in workers) == ["opened"] * PROCESSES
    with Escrow(pg_schema_url) as engine:  # and the store they made works
        engine.execute(
            CreateOrder(
                order="o1",
                seller="alice",
                buyer="bob",
                asset="USDT",
                amount="1",
                price="1",
                fiat="EUR",
                payment_method="sepa",
            )
        )
        assert engine.order("o1").state == "awaiting_payment"
