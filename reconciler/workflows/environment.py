"""EnvironmentReconcileWorkflow: the only place `pulumi up` runs for an environment.

Deterministic code only; the reconcile itself is an activity (reconciler.activities).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from reconciler import payloads as p
    from reconciler.workflows.common import (
        DB_RETRY,
        RECONCILE_RETRY,
        root_cause,
        violations_of,
    )

# Runs recorded before sharding existed replay without the shard-count activity.
SHARDED_PATCH = "sharded-reconcile"


@workflow.defn
class EnvironmentReconcileWorkflow:
    """The only place `pulumi up` runs for an environment; coalesces requests.

    Requests arrive as `request` signals (signal-with-start, from the
    registration workflows' request_reconcile activity) or as `reconcile`
    updates (update-with-start, from the CLI/API). Everything that arrives
    while a run is under way, or within the debounce window before it, is
    served by the next single run. Each requester then learns the outcome: by
    a `reconcile_finished` signal to its workflow, or as the update's result.
    """

    def __init__(self) -> None:
        self._pending: list[p.ReconcileRequest] = []
        self._finished: dict[str, p.ReconcileOutcome] = {}
        self._in_flight: set[str] = set()
        self._run_number = 0

    def _enqueue(self, request: p.ReconcileRequest) -> None:
        rid = request.request_id
        if rid in self._in_flight or any(r.request_id == rid for r in self._pending):
            return
        self._pending.append(request)

    @workflow.signal
    async def request(self, request: p.ReconcileRequest) -> None:
        if request.request_id in self._finished:
            # a retried request whose run already finished: tell the caller again
            await self._notify(request, self._finished[request.request_id])
            return
        self._enqueue(request)

    @workflow.update
    async def reconcile(self, request: p.ReconcileRequest) -> p.ReconcileOutcome:
        if request.request_id not in self._finished:
            self._enqueue(request)
        await workflow.wait_condition(lambda: request.request_id in self._finished)
        return self._finished[request.request_id]

    @workflow.query
    def status(self) -> dict[str, int]:
        return {
            "runs": self._run_number,
            "pending": len(self._pending),
            "in_flight": len(self._in_flight),
        }

    async def _notify(self, request: p.ReconcileRequest, outcome: p.ReconcileOutcome) -> None:
        if not request.requester_workflow_id:
            return
        handle = workflow.get_external_workflow_handle(request.requester_workflow_id)
        try:
            await handle.signal(
                "reconcile_finished",
                p.ReconcileFinished(request_id=request.request_id, outcome=outcome),
            )
        except ApplicationError as err:
            # The requester has finished or was removed; nobody is waiting.
            workflow.logger.info("could not notify %s: %s", request.requester_workflow_id, err)

    @workflow.run
    async def run(self, state: p.EnvironmentState) -> int:
        for request in state.pending:
            self._enqueue(request)
        self._run_number = state.run_number
        runs_here = 0
        while True:
            try:
                await workflow.wait_condition(
                    lambda: bool(self._pending), timeout=state.idle_timeout_seconds
                )
            except TimeoutError:
                pass
            if not self._pending:
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._pending:
                    return self._run_number
            # Debounce: let a burst of requests land in this run.
            await workflow.sleep(state.debounce_seconds)
            batch, self._pending = self._pending, []
            self._in_flight = {r.request_id for r in batch}
            self._run_number += 1
            outcome = await self._run_once(state, batch)
            for request in batch:
                self._finished[request.request_id] = outcome
            self._in_flight = set()
            for request in batch:
                await self._notify(request, outcome)
            runs_here += 1
            if runs_here >= state.runs_before_continue_as_new and not self._pending:
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    p.EnvironmentState(
                        environment=state.environment,
                        debounce_seconds=state.debounce_seconds,
                        idle_timeout_seconds=state.idle_timeout_seconds,
                        runs_before_continue_as_new=state.runs_before_continue_as_new,
                        heartbeat_timeout_seconds=state.heartbeat_timeout_seconds,
                        pending=tuple(self._pending),
                        run_number=self._run_number,
                    )
                )

    async def _run_once(
        self, state: p.EnvironmentState, batch: list[p.ReconcileRequest]
    ) -> p.ReconcileOutcome:
        if workflow.patched(SHARDED_PATCH):
            try:
                shards: int = await workflow.execute_activity(
                    p.ENVIRONMENT_SHARDS,
                    state.environment,
                    result_type=int,
                    # A new environment's stacks are created here (one per shard).
                    start_to_close_timeout=timedelta(minutes=10),
                    retry_policy=DB_RETRY,
                )
            except ActivityError as err:
                return p.ReconcileOutcome(
                    ok=False, message=root_cause(err), run_number=self._run_number
                )
            if shards > 1:
                return await self._run_sharded(state, batch, shards)
        try:
            outcome: p.ReconcileOutcome = await workflow.execute_activity(
                p.RECONCILE_ENVIRONMENT,
                p.ReconcileEnvironmentInput(
                    environment=state.environment,
                    run_id=f"{workflow.info().workflow_id}/{self._run_number}",
                    request_ids=tuple(r.request_id for r in batch),
                    confirm_deletions=any(r.confirm_deletions for r in batch),
                    allow_empty=any(r.allow_empty for r in batch),
                ),
                result_type=p.ReconcileOutcome,
                start_to_close_timeout=timedelta(hours=2),
                heartbeat_timeout=timedelta(seconds=state.heartbeat_timeout_seconds),
                retry_policy=RECONCILE_RETRY,
            )
        except ActivityError as err:
            return p.ReconcileOutcome(
                ok=False,
                message=root_cause(err),
                run_number=self._run_number,
                policy_violations=violations_of(err),
            )
        return outcome

    async def _run_sharded(
        self, state: p.EnvironmentState, batch: list[p.ReconcileRequest], shards: int
    ) -> p.ReconcileOutcome:
        """Every shard at once, each an activity any worker may run, then one publish.

        Each shard runs at most once at a time (this workflow is the environment's
        only runner and awaits them all); a shard whose worker dies is retried
        elsewhere after the heartbeat timeout and recovers its stack first. A shard
        that fails does not keep the others' changes out of Git.
        """
        run_id = f"{workflow.info().workflow_id}/{self._run_number}"

        async def one(shard: int) -> p.ShardOutcome:
            try:
                outcome: p.ShardOutcome = await workflow.execute_activity(
                    p.RECONCILE_SHARD,
                    p.ReconcileShardInput(
                        environment=state.environment,
                        shard=shard,
                        run_id=run_id,
                        confirm_deletions=any(r.confirm_deletions for r in batch),
                        allow_empty=any(r.allow_empty for r in batch),
                    ),
                    result_type=p.ShardOutcome,
                    start_to_close_timeout=timedelta(hours=2),
                    heartbeat_timeout=timedelta(seconds=state.heartbeat_timeout_seconds),
                    retry_policy=RECONCILE_RETRY,
                )
            except ActivityError as err:
                return p.ShardOutcome(
                    shard=shard,
                    stack=f"{state.environment}-{shard}",
                    ok=False,
                    message=root_cause(err),
                    policy_violations=violations_of(err),
                )
            return outcome

        results = await asyncio.gather(*(one(shard) for shard in range(shards)))
        try:
            published: p.ReconcileOutcome = await workflow.execute_activity(
                p.PUBLISH_ENVIRONMENT,
                p.PublishEnvironmentInput(
                    environment=state.environment, run_id=run_id, shards=tuple(results)
                ),
                result_type=p.ReconcileOutcome,
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=timedelta(seconds=state.heartbeat_timeout_seconds),
                retry_policy=RECONCILE_RETRY,
            )
        except ActivityError as err:
            return p.ReconcileOutcome(
                ok=False,
                message=root_cause(err),
                run_number=self._run_number,
                policy_violations=tuple(v for r in results for v in r.policy_violations),
                shards=tuple(results),
            )
        return published
