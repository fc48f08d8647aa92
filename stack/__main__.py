"""Pulumi entry point for engineers: `pulumi preview -s staging` from the repo root.

Loads the stack's config from Pulumi.<stack>.yaml (the same loader the
automation API uses) and the deployable rows from the database named by
PORTAL_DOMAINS_DATABASE_URL (default: the embedded SQLite file), then declares
the same resources as the automation API's inline program.
"""

from __future__ import annotations

import pulumi

from core.settings import Settings
from core.shards import parse_stack_name, shard_of
from db.service import DomainService
from db.session import make_engine, make_session_factory
from stack.automation import shard_config
from stack.config import ENVIRONMENTS, load_stack_config
from stack.program import build


def main() -> None:
    # `staging`, or one shard's stack `staging-3` (core.shards) of a sharded environment.
    environment, shard = parse_stack_name(pulumi.get_stack(), ENVIRONMENTS)
    config = load_stack_config(environment)
    settings = Settings.from_env()
    service = DomainService(
        make_session_factory(make_engine(settings.database_url)), base_domain=config.base_domain
    )
    records = service.load_records()
    if shard is not None:
        records = [r for r in records if shard_of(r.tenant_id, config.shards) == shard]
        config = shard_config(config, shard)
    pulumi.log.info(f"{len(records)} domain row(s) loaded from the database")
    build(records, config)


main()
