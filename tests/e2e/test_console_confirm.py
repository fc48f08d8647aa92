"""The console's "Confirm deletions" end to end: a held removal goes through the real worker.

Reconciler harness (PostgreSQL, Temporal dev server, in-process worker, real
Pulumi engine, bare nm-kube-config) with deletionCap 0, so a removal is held;
an operator then confirms it on /console/environment (session handover, CSRF)
and the worker's confirming run prunes it.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from db.service import PLATFORM_LOG, REMOVAL, REMOVAL_DONE
from tests.support.api import api_settings, mint_token
from tests.support.harness import deletion_cap_zero, held_removal, reconciler_harness

pytestmark = [pytest.mark.pulumi, pytest.mark.temporal, pytest.mark.postgres]


def test_an_operator_confirms_a_held_removal_in_the_console_and_the_worker_prunes_it(
    tmp_path: Path, postgres_url: str, temporal_address: str
) -> None:
    async def scenario() -> None:
        async with reconciler_harness(
            tmp_path,
            database_url=postgres_url,
            temporal_address=temporal_address,
            extra_env=deletion_cap_zero(tmp_path),
        ) as h:
            view = await held_removal(h, "portal.acme.com")

            api = api_settings()
            app = create_app(settings=h.settings, api=api, service=h.service)
            client = TestClient(app)
            token = mint_token(api, role="platform_operator", tenant=None, sub="ops", ttl=120)
            signed_in = client.get(
                "/portal/session", params={"token": token}, follow_redirects=False
            )
            assert signed_in.status_code == 303, signed_in.text
            page = client.get("/console/environment")
            assert view.canonical_prefix in page.text  # listed as held
            found = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
            assert found is not None
            # The request blocks until the confirming run finished: off the loop the
            # worker runs on.
            answer = await asyncio.to_thread(
                client.post,
                "/console/environment/confirm-deletions",
                data={"csrf_token": found.group(1)},
            )
            assert answer.status_code == 200, answer.text

            await h.wait_remote(lambda f: f == {})
            removed = await asyncio.to_thread(h.service.get, view.tenant_id)
            assert removed.verification_details.get(REMOVAL) == REMOVAL_DONE
            entries = [
                e
                for e in await asyncio.to_thread(h.service.audit_log, PLATFORM_LOG)
                if e.action == "confirm_deletions"
            ]
            assert [(e.actor, e.outcome) for e in entries] == [("operator:ops", "ok")]

            # The environment page lists the worker's runs from the audit trail,
            # the confirming one first, with what it deleted and how long it took.
            runs = client.get("/console/environment")
            table = runs.text.split('id="console-attempts"', 1)[1].split("</table>", 1)[0]
            assert 'data-ok="no"' not in table
            first_row = table.split("<tr data-ok=")[1]
            assert "1 deleted" in first_row or "3 deleted" in first_row
            assert " s</td>" in first_row  # a duration
            assert len(table.split("<tr data-ok=")) >= 3  # the earlier runs are listed too

    asyncio.run(scenario())
