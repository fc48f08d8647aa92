"""A real PostgreSQL server is reachable and usable by the tests."""

from __future__ import annotations

import pytest
import sqlalchemy

pytestmark = pytest.mark.postgres


def test_a_table_can_be_created_written_and_dropped(postgres_url: str) -> None:
    engine = sqlalchemy.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("CREATE TABLE probe (id int primary key, note text)"))
            conn.execute(sqlalchemy.text("INSERT INTO probe VALUES (1, 'ok')"))
            assert conn.execute(sqlalchemy.text("SELECT note FROM probe")).scalar_one() == "ok"
            conn.execute(sqlalchemy.text("DROP TABLE probe"))
        with engine.connect() as conn:
            exists = conn.execute(sqlalchemy.text("SELECT to_regclass('probe')")).scalar_one()
        assert exists is None
    finally:
        engine.dispose()
