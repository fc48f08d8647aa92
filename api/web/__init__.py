"""Web pages served with the REST API: the tenant's Client Portal domain settings page.

Server-rendered (Jinja2, autoescaped) with a little progressive JavaScript
from /portal/static (no CDN, no inline script). The host application signs the
user in with a short-lived token (api.web.session); the page then acts through
the same authorisation, service and audit as the REST API (api.web.pages).
The operator console is at /console (api.web.console, api.web.environment).
"""

from fastapi import FastAPI

from api.settings import ApiSettings
from api.web.console import router as console_router
from api.web.environment import router as environment_router
from api.web.pages import install_pages
from api.web.settings import WebSettings
from api.web.stacks import ConsoleStack

__all__ = ["WebSettings", "install_web"]


def install_web(app: FastAPI, *, api: ApiSettings, web: WebSettings | None = None) -> None:
    """Add the settings page, the operator console and their static files to `app`."""
    install_pages(app, api=api, web=web)
    settings = app.state.gatekeeper.settings
    # Built lazily on first use: a server that never opens the console never touches Pulumi.
    app.state.console_stack = ConsoleStack(settings, settings.environment)
    app.include_router(console_router)
    app.include_router(environment_router)
