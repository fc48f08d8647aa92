"""Pulumi entry point for engineers: `pulumi preview -s staging` from the repo root.

Loads the stack's config from Pulumi.<stack>.yaml (the same loader the
automation API uses) and the deployable rows from the database named by
PORTAL_DOMAINS_DATABASE_URL (default: the embedded SQLite file), then declares
the same resources as the automation API's inline program.
"""

from __future__ import annotations

import pulumi

from core.settings import Settings
from db.service import DomainService
from db.session import make_engine, make_session_factory
from stack.config import load_stack_config
from stack.program import build


def main() -> None:
    config = load_stack_config(pulumi.get_stack())
    settings = Settings.from_env()
    service = DomainService(
        make_session_factory(make_engine(settings.database_url)), base_domain=config.base_domain
    )
    records = service.load_records()
    pulumi.log.info(f"{len(records)} domain row(s) loaded from the database")
    build(records, config)


main()
