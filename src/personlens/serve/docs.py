"""The API's documentation pages, served offline, and the bearer scheme in its OpenAPI.

* ``/docs`` (Swagger UI) and ``/redoc``: their JavaScript and CSS come from the
  ``fastapi-offline`` wheel, mounted at ``/static/docs/`` (open, like ``/static/``); nothing is
  fetched from a CDN, so the pages work without a network.
* The pages are open (they hold no data), ``/openapi.json`` is not: the page loads the spec with
  the ``personlens_token`` cookie, which GET requests accept (``guard``). Without a valid
  cookie, the page answers a small form asking for the token (POSTed back to the page, or given
  as ``?token=TOKEN`` in a link); a right token sets the cookie (HttpOnly, SameSite=Strict) and
  redirects to the page. "Try it out" sends the token that Swagger UI's **Authorize** button
  keeps (``persistAuthorization``); writes always need it, as everywhere.
* :func:`add_bearer_scheme`: ``components.securitySchemes.bearer`` (HTTP bearer) and a global
  ``security`` requirement, with ``security: []`` on the open routes, so Swagger UI shows
  Authorize; ``GuardMiddleware`` stays the real check.
"""
from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from .auth import COOKIE, bearer, token_matches

DOCS_STATIC = "/static/docs"
BEARER = "bearer"


def assets_dir() -> Path:
    """Swagger UI's and ReDoc's files, as the ``fastapi-offline`` wheel ships them."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def add_bearer_scheme(app: FastAPI, open_paths) -> None:
    """Document the bearer token in ``app``'s OpenAPI (every operation but ``open_paths``)."""
    base = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = base()
            schema.setdefault("components", {}).setdefault("securitySchemes", {})[BEARER] = {
                "type": "http", "scheme": "bearer",
                "description": "The API token: $PERSONLENS_TOKEN, else DB/serve-token "
                               "(printed by `personlens serve` when generated)."}
            schema["security"] = [{BEARER: []}]
            for path, ops in schema.get("paths", {}).items():
                if path in open_paths:
                    for op in ops.values():
                        op["security"] = []
        return app.openapi_schema

    app.openapi = openapi


def install(app: FastAPI, token: str | None) -> None:
    """Mount the offline assets and add ``/docs`` and ``/redoc`` (``token=None``: no auth).
    Call it before mounting ``/static`` (the first mount that matches a path wins)."""
    app.mount(DOCS_STATIC, StaticFiles(directory=assets_dir()), name="docs-static")
    favicon = f"{DOCS_STATIC}/favicon.png"

    def swagger(request: Request) -> Response:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title=f"{app.title} - API",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css", swagger_favicon_url=favicon,
            swagger_ui_parameters={"persistAuthorization": True})

    def redoc(request: Request) -> Response:
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} - API",
                              redoc_js_url=f"{DOCS_STATIC}/redoc.standalone.js",
                              redoc_favicon_url=favicon, with_google_fonts=False)

    for path, render in (("/docs", swagger), ("/redoc", redoc)):
        _add_page(app, path, render, token)


def _add_page(app: FastAPI, path: str, render, token: str | None) -> None:
    async def page(request: Request) -> Response:
        if token is None:
            return render(request)
        given = request.query_params.get("token")
        if request.method == "POST":
            given = (await request.form()).get("token")
        if given is not None:
            if not token_matches(str(given), token):
                return _login(path, "That is not the token.", 401)
            resp = RedirectResponse(path, status_code=303)
            resp.set_cookie(COOKIE, str(given), httponly=True, samesite="strict", max_age=30 * 86400)
            return resp
        have = bearer(request.headers.get("authorization")) or request.cookies.get(COOKIE)
        if not token_matches(have, token):
            return _login(path, None, 200)
        return render(request)

    app.add_api_route(path, page, methods=["GET", "POST"], include_in_schema=False)


def _login(path: str, error: str | None, status: int) -> HTMLResponse:
    """The token form shown instead of the docs when the browser holds no valid token."""
    msg = f'<p class="err">{html.escape(error)}</p>' if error else ""
    return HTMLResponse(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>personlens API: token</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:16px system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}
input{{font:inherit;width:100%;box-sizing:border-box;padding:.4rem;margin:.5rem 0}}
button{{font:inherit;padding:.4rem 1rem}}.err{{color:#b00020}}</style></head>
<body><h1>personlens API</h1>
<p>The API documentation needs the API token: <code>$PERSONLENS_TOKEN</code>, or the one
<code>personlens serve</code> printed and keeps in <code>DB/serve-token</code>.</p>{msg}
<form method="post" action="{path}"><label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Open the documentation</button></form></body></html>""", status_code=status,
                        headers={"Cache-Control": "no-store"})
