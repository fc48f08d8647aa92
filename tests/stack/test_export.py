"""stack.export: the files written to nm-kube-config, byte for byte."""

from __future__ import annotations

import uuid

import pytest
import yaml

from core.config import parse_stack_config
from core.manifests import desired_documents
from core.records import DomainRecord
from core.status import DomainStatus
from stack import export


def _objects(environment: str) -> list[dict[str, object]]:
    config = parse_stack_config({}, environment=environment)
    rows = [
        DomainRecord(
            tenant_id=str(uuid.UUID(int=i + 1)),
            prefix=f"{i + 1:07x}",
            domain=domain,
            canonical_host=f"{i + 1:07x}.portal.algapsa.com",
            certificate_secret_name=f"portal-domain-{i + 1:07x}-tls",
            status=DomainStatus.ACTIVE,
        )
        for i, domain in enumerate(["portal.acme.com", "xn--bcher-kva.example", "a" * 63 + ".io"])
    ]
    return [
        {
            "slug": "cluster-issuer"
            if doc["kind"] == "ClusterIssuer"
            else doc["metadata"]["name"].removeprefix("portal-domain-"),
            "outputs": doc,
        }
        for doc in desired_documents(rows, config)
    ]


@pytest.mark.parametrize("environment", ["staging", "prod"])
def test_the_fast_emitter_writes_the_same_bytes_as_the_python_one(
    environment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = _objects(environment)
    fast = export.render_files(objects, environment=environment)
    monkeypatch.setattr(export, "DUMPER", yaml.SafeDumper)
    assert export.render_files(objects, environment=environment) == fast
    assert len(fast) == 4  # three tenants and the issuer
