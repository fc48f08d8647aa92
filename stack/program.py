"""The Pulumi program: one PortalDomain component per deployable tenant.

Used two ways with the same code: the automation API runs `build` inline with a
snapshot of rows it already loaded, and `stack/__main__.py` (what
`pulumi preview -s staging` runs from the repo root) loads the rows itself.
Pruning is the stack diff: a tenant absent from the snapshot is absent from the
program, so Pulumi deletes its three objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_kubernetes as k8s

from core.config import StackConfig
from core.manifests import DomainManifests, Manifest, cluster_issuer, desired_state
from core.records import DomainRecord

COMPONENT_TYPE = "portal-domains:index:PortalDomain"
ISSUER_RESOURCE = "cluster-issuer"
# Relative on purpose: provider inputs are part of its identity, and an
# absolute path would differ per checkout and replace every resource.
RENDER_DIR = "rendered-manifests"
# Changing the vanity host means a new certificate for a new name: replace the
# objects rather than patch them in place (same Kubernetes names, so delete first).
HOST_FIELDS = ["spec.dnsNames", "spec.hosts", "spec.servers"]


class PortalDomain(pulumi.ComponentResource):
    """A tenant's Certificate, Gateway and VirtualService."""

    def __init__(
        self,
        manifests: DomainManifests,
        *,
        provider: k8s.Provider,
        live: bool,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPE, manifests.slug, None, opts)
        child_opts = pulumi.ResourceOptions(
            parent=self,
            provider=provider,
            replace_on_changes=HOST_FIELDS,
            delete_before_replace=True,
        )
        self.certificate = _custom_resource(
            f"{manifests.slug}-certificate", manifests.certificate, child_opts, live=live
        )
        self.gateway = _custom_resource(
            f"{manifests.slug}-gateway", manifests.gateway, child_opts, live=live
        )
        self.virtual_service = _custom_resource(
            f"{manifests.slug}-virtualservice", manifests.virtual_service, child_opts, live=live
        )
        self.register_outputs({"tenantId": manifests.tenant_id, "domain": manifests.domain})


# Provider behaviour for objects applied to a live cluster (cluster mode):
# - patchForce: these objects are ours; a hand edit takes ownership of the fields
#   it touched, and without force the next server-side apply would stop on that
#   conflict instead of restoring what the database says.
#   It is also what adopts objects that already exist live under our names
#   (written by hand or by the TypeScript implementation): server-side apply
#   upserts, so the first `up` patches and takes over the existing object (same
#   uid) instead of failing or re-creating it; without force it would stop on the
#   fields the other manager set. No `import` option is needed
#   (tests/e2e/test_adoption.py).
# - background deletion: the provider otherwise deletes with foreground
#   propagation, which waits for the garbage collector to finish the object's
#   dependents; ours have none worth waiting for (cert-manager's
#   CertificateRequests go with their Certificate either way).
LIVE_ANNOTATIONS = {
    "pulumi.com/patchForce": "true",
    "pulumi.com/deletionPropagationPolicy": "background",
}


def _custom_resource(
    name: str, manifest: Manifest, opts: pulumi.ResourceOptions, *, live: bool
) -> k8s.apiextensions.CustomResource:
    metadata = dict(manifest["metadata"])
    if live:
        metadata["annotations"] = {**metadata.get("annotations", {}), **LIVE_ANNOTATIONS}
    return k8s.apiextensions.CustomResource(
        name,
        api_version=manifest["apiVersion"],
        kind=manifest["kind"],
        metadata=metadata,
        spec=manifest["spec"],
        opts=opts,
    )


def make_provider(config: StackConfig) -> k8s.Provider:
    if config.mode == "cluster":
        return k8s.Provider("cluster", kubeconfig=config.kubeconfig)
    # gitops: no cluster; the provider renders YAML and Git gets our own export.
    # kubeconfig is pinned to "" so the SDK never fills it in from a KUBECONFIG
    # variable (render mode rejects a kubeconfig, and the input must not
    # differ between an engineer's shell and the worker).
    return k8s.Provider("gitops", render_yaml_to_directory=RENDER_DIR, kubeconfig="")


def build(records: Sequence[DomainRecord], config: StackConfig) -> None:
    """Declare the resources for `records` (call inside a Pulumi program)."""
    manifests = desired_state(records, config)
    provider = make_provider(config)
    live = config.mode == "cluster"
    if config.declare_issuer:
        # One per environment, cluster-scoped; its logical name is no tenant's prefix.
        _custom_resource(
            ISSUER_RESOURCE,
            cluster_issuer(config),
            pulumi.ResourceOptions(provider=provider),
            live=live,
        )
    for item in manifests:
        PortalDomain(item, provider=provider, live=live)
    pulumi.export("environment", config.environment)
    pulumi.export("domains", {m.slug: m.domain for m in manifests})
