"""The test suite's timing profile: every workflow wait in seconds or less.

Handed to workers as PORTAL_DOMAINS_TIMINGS (JSON); production code has no
test profile of its own.
"""

from __future__ import annotations

from reconciler import payloads as p
from reconciler.timings import as_setting

TEST_TIMINGS = p.Timings(
    dns_check_delays=(0.3, 0.5),
    dns_timeout=4,
    cert_poll_interval=0.5,
    cert_timeout=30,
    cert_failure_grace=3,
    https_poll_interval=0.5,
    https_timeout=15,
    reconcile_wait_timeout=300,
    failed_retry_interval=30,
    watch_interval=1,
    watch_checks_before_continue_as_new=5,
)
TEST_TIMINGS_SETTING = as_setting(TEST_TIMINGS)
