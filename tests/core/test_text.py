"""core.text: what may reach a message or a log."""

from __future__ import annotations

from core.text import redact_urls


def test_a_postgres_backend_password_is_redacted_from_messages() -> None:
    text = 'open "postgres://bob:S3cret@db:5432/state?sslmode=require": refused'
    assert redact_urls(text) == 'open "postgres://***@db:5432/state?sslmode=require": refused'
