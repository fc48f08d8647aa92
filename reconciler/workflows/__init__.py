"""Temporal workflows: one registration workflow per tenant, one reconcile per environment.

Workflow modules import only the core and the payloads (never Pulumi or
SQLAlchemy: the sandbox re-imports them for every run); an import-linter
contract enforces it.
"""

from reconciler.workflows.environment import EnvironmentReconcileWorkflow
from reconciler.workflows.registration import PortalDomainRegistrationWorkflow

__all__ = ["EnvironmentReconcileWorkflow", "PortalDomainRegistrationWorkflow"]
