"""The tenant-facing REST API (`portal-domains serve`): /api/settings/client-portal/domain.

`settings` (ApiSettings from PORTAL_DOMAINS_JWT_* and friends), `auth` (bearer
tokens), `rbac` (who may do what, pure), `ratelimit` (per-tenant token
buckets), `app` (the FastAPI application around db.service.DomainService).
"""
