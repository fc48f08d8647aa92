"""The console's "Confirm deletions" end to end: a held removal goes through the real worker.

Reconciler harness (PostgreSQL, Temporal dev server, in-process worker, real
Pulumi engine, bare nm-kube-config) with deletionCap 0, so a removal is held;
an operator then confirms it on /console/environment in Chromium (session
handover, CSRF) and the worker's confirming run prunes it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from api.app import create_app
from db.service import PLATFORM_LOG, REMOVAL, REMOVAL_DONE
from tests.support.api import api_settings, mint_token, serving
from tests.support.browser import chromium
from tests.support.harness import deletion_cap_zero, held_removal, reconciler_harness

pytestmark = [pytest.mark.pulumi, pytest.mark.temporal, pytest.mark.postgres, pytest.mark.browser]


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
            token = mint_token(api, role="platform_operator", tenant=None, sub="ops", ttl=120)
            with serving(app) as base_url, chromium() as browser:
                # Blocking browser calls run off the loop the worker runs on.
                await asyncio.to_thread(browser.get, f"{base_url}/portal/session?token={token}")
                await asyncio.to_thread(browser.get, f"{base_url}/console/environment")
                held = browser.find_elements(By.CSS_SELECTOR, "#console-held tr[data-tenant]")
                assert [r.get_attribute("data-tenant") for r in held] == [str(view.tenant_id)]
                await asyncio.to_thread(
                    browser.find_element(By.ID, "console-confirm-deletions").click
                )
                # The answer comes once the confirming run finished (within 120 s).
                notice = await asyncio.to_thread(
                    WebDriverWait(browser, 150).until,
                    lambda d: (
                        d.find_elements(By.ID, "console-notice")
                        or d.find_elements(By.ID, "console-error")
                    ),
                )
                assert notice[0].get_attribute("id") == "console-notice", notice[0].text
                assert "confirmed" in notice[0].text
                # The page now lists the worker's runs from the audit trail, the
                # confirming one first, with what it deleted and how long it took.
                table = browser.page_source.split('id="console-attempts"', 1)[1]
                table = table.split("</table>", 1)[0]
                assert not browser.find_elements(By.CSS_SELECTOR, "#console-held tr[data-tenant]")

            await h.wait_remote(lambda f: f == {})
            removed = await asyncio.to_thread(h.service.get, view.tenant_id)
            assert removed.verification_details.get(REMOVAL) == REMOVAL_DONE
            entries = [
                e
                for e in await asyncio.to_thread(h.service.audit_log, PLATFORM_LOG)
                if e.action == "confirm_deletions"
            ]
            assert [(e.actor, e.outcome) for e in entries] == [("operator:ops", "ok")]

            assert 'data-ok="no"' not in table
            first_row = table.split("<tr data-ok=")[1]
            assert "3 deleted" in first_row
            assert " s</td>" in first_row  # a duration
            assert len(table.split("<tr data-ok=")) >= 3  # the earlier runs are listed too

    asyncio.run(scenario())
