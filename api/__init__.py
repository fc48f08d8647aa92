"""The tenant-facing REST API (`portal-domains serve`): /api/settings/client-portal/domain.

`settings` (ApiSettings from PORTAL_DOMAINS_JWT_* and friends), `auth` (bearer
tokens), `rbac` (who may do what, pure), `ratelimit` (per-tenant token
buckets), `deps` (caller, target tenant, the Gatekeeper that authorises),
`routes` (the APIRouter), `errors` (the one status table), `middleware`, and
`app` (create_app, composing them around db.service.DomainService).
"""
