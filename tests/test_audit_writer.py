"""The audit writer (reads audited by the API): rows of many threads committed together, chain intact,
``record`` returns only after its row is committed, and a database it cannot write to is an error."""

from __future__ import annotations

import threading

import psycopg
import pytest

from cloud.privacy.audit import AuditUnavailable, AuditWriter, record, verify


def test_rows_of_many_threads_chain_and_are_committed_when_record_returns(fresh_database: str) -> None:
    writer = AuditWriter(fresh_database)
    writer.open()
    seen_committed: list[bool] = []

    def reader(n: int) -> None:
        for i in range(25):
            subject = f"t{n}-{i}"
            writer.record(key_id=n, action="test.read", subject=subject, outcome="ok", detail={"i": i})
            with psycopg.connect(fresh_database) as check:  # another session sees it: committed
                row = check.execute("SELECT 1 FROM audit_log WHERE subject = %s", (subject,)).fetchone()
                seen_committed.append(row is not None)

    try:
        with psycopg.connect(fresh_database, autocommit=True) as conn:
            record(conn, key_id=None, action="test.write", subject="before", outcome="ok")
        threads = [threading.Thread(target=reader, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        writer.close()
    assert seen_committed == [True] * 200
    with psycopg.connect(fresh_database) as conn:
        report = verify(conn)
        assert report.ok, report.problems
        assert report.rows == 201
    assert 1 <= writer.transactions <= 200


def test_a_row_that_cannot_be_written_is_an_error(fresh_database: str) -> None:
    writer = AuditWriter(fresh_database.replace("dbname=", "dbname=no_such_database_"), timeout_s=10)
    writer.open()
    try:
        with pytest.raises(AuditUnavailable):
            writer.record(key_id=1, action="test.read", subject="x", outcome="ok")
    finally:
        writer.close()
    closed = AuditWriter(fresh_database)
    with pytest.raises(AuditUnavailable):
        closed.record(key_id=1, action="test.read", subject="x", outcome="ok")


def test_the_async_writer_commits_each_row_before_record_returns(fresh_database: str) -> None:
    import asyncio

    from cloud.privacy.audit import AsyncAuditWriter

    async def run() -> tuple[list[bool], int]:
        writer = AsyncAuditWriter(fresh_database)
        writer.open()
        seen: list[bool] = []
        async with await psycopg.AsyncConnection.connect(fresh_database, autocommit=True) as check:

            async def reader(n: int) -> None:
                for i in range(10):
                    subject = f"a{n}-{i}"
                    await writer.record(key_id=n, action="test.read", subject=subject, outcome="ok")
                    cur = await check.execute("SELECT 1 FROM audit_log WHERE subject = %s", (subject,))
                    seen.append(await cur.fetchone() is not None)

            await asyncio.gather(*(reader(n) for n in range(20)))
        await writer.close()
        return seen, writer.transactions

    seen, transactions = asyncio.run(run())
    assert seen == [True] * 200
    assert 1 <= transactions < 200  # rows of concurrent readers were committed together
    with psycopg.connect(fresh_database) as conn:
        report = verify(conn)
        assert report.ok and report.rows == 200, report.problems


def test_the_async_writer_reports_a_database_it_cannot_write_to(fresh_database: str) -> None:
    import asyncio

    from cloud.privacy.audit import AsyncAuditWriter

    async def run() -> None:
        writer = AsyncAuditWriter(fresh_database.replace("dbname=", "dbname=no_such_database_"), timeout_s=10)
        writer.open()
        try:
            with pytest.raises(AuditUnavailable):
                await writer.record(key_id=1, action="test.read", subject="x", outcome="ok")
        finally:
            await writer.close()

    asyncio.run(run())
