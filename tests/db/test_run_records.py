"""db.run_records: the shared store of each stack's last successful run."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.digest import RecordedRun
from db import migrate
from db.run_records import DbRunRecords
from db.session import make_engine, make_session_factory

OBJECTS = [{"slug": "abc1234", "urn": "urn:pulumi:staging-1::x", "outputs": {"kind": "Gateway"}}]


@pytest.fixture(params=["sqlite", "postgres"])
def records(request: pytest.FixtureRequest, tmp_path: object) -> DbRunRecords:
    if request.param == "sqlite":
        url = f"sqlite:///{request.getfixturevalue('tmp_path')}/rows.db"
    else:
        url = request.getfixturevalue("postgres_url")
    migrate.upgrade(url)
    return DbRunRecords(make_session_factory(make_engine(url)))


def test_a_record_is_saved_replaced_read_back_and_forgotten(records: DbRunRecords) -> None:
    assert records.shared is True
    assert records.load("staging-1") is None
    at = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
    records.save("staging-1", RecordedRun(digest="a" * 64, full_pass_at=at), OBJECTS)
    records.save("staging-2", RecordedRun(digest="c" * 64, full_pass_at=at), None)
    assert records.load("staging-1") == (RecordedRun(digest="a" * 64, full_pass_at=at), OBJECTS)
    later = RecordedRun(digest="b" * 64, full_pass_at=at.replace(hour=8))
    records.save("staging-1", later, [])
    assert records.load("staging-1") == (later, [])
    assert records.load("staging-2") == (RecordedRun(digest="c" * 64, full_pass_at=at), None)
    records.forget("staging-1")
    assert records.load("staging-1") is None
    assert records.load("staging-2") is not None  # only the named stack's record goes


def test_malformed_objects_read_as_unknown(records: DbRunRecords) -> None:
    at = datetime(2026, 12, 2, tzinfo=UTC)
    records.save("prod-0", RecordedRun(digest="d" * 64, full_pass_at=at), [{"slug": "x"}])
    found = records.load("prod-0")
    assert found is not None
    assert found[1] is None  # the caller then reads the state instead
