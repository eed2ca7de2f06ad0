"""One OpenAPI document for the whole public API, merged from the services' own.

Each FastAPI service serves its document at ``/api/<service>/openapi.json``; the
gateway fetches it from one healthy replica of each, merges the paths (already full
public paths) and the components, and caches the result for a TTL. A component
name two services define differently is prefixed with the service's name
(``catalog.Item``, ``orders.Item``) and every reference to it rewritten; identical
ones (FastAPI's ``HTTPValidationError``) are shared. ``/api/docs`` is Swagger UI,
served offline from the swagger-ui-bundle package.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from swagger_ui_bundle import swagger_ui_path

from bazaar.gateway.balancer import Balancer
from bazaar.gateway.routing import SITE_PREFIX, RouteTable
from bazaar.kit.logging import get_logger

log = get_logger(__name__)

OPENAPI_VERSION = "3.1.0"
# A document missing some services is kept only briefly: they may be starting.
INCOMPLETE_TTL_SECONDS = 2.0
FETCH_TIMEOUT_SECONDS = 5.0

BEARER_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": "An access token from POST /api/auth/token",
}


def merge_openapi(
    documents: Mapping[str, dict[str, Any]],
    *,
    title: str = "Bazaar API",
    version: str = "1",
    unavailable: list[str] | None = None,
) -> dict[str, Any]:
    """Merge the services' documents (service name → document) into one."""
    definitions: dict[str, dict[str, dict[str, Any]]] = {}  # section → name → service → def
    for service, document in documents.items():
        for section, entries in (document.get("components") or {}).items():
            if isinstance(entries, dict):
                for name, definition in entries.items():
                    definitions.setdefault(section, {}).setdefault(name, {})[service] = definition

    renames: dict[str, dict[str, str]] = {service: {} for service in documents}
    for section, names in definitions.items():
        for name, by_service in names.items():
            distinct = {orjson.dumps(d, option=orjson.OPT_SORT_KEYS) for d in by_service.values()}
            if len(distinct) > 1:
                for service in by_service:
                    renames[service][f"#/components/{section}/{name}"] = (
                        f"#/components/{section}/{service}.{name}"
                    )

    paths: dict[str, Any] = {}
    components: dict[str, dict[str, Any]] = {"securitySchemes": {"bearer": BEARER_SCHEME}}
    for service, document in documents.items():
        renamed = _rewrite_refs(document, renames[service])
        for path, operations in (renamed.get("paths") or {}).items():
            if isinstance(operations, dict):
                for operation in operations.values():
                    if isinstance(operation, dict) and not operation.get("tags"):
                        operation["tags"] = [service]
                paths.setdefault(path, {}).update(operations)
        for section, entries in (renamed.get("components") or {}).items():
            if not isinstance(entries, dict):
                continue
            target = components.setdefault(section, {})
            for name, definition in entries.items():
                ref = f"#/components/{section}/{name}"
                key = renames[service][ref].rsplit("/", 1)[1] if ref in renames[service] else name
                target[key] = definition

    merged: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": "The public API of Bazaar, through its gateway. "
            "Send `Authorization: Bearer <access token>`; errors are application/problem+json.",
        },
        "paths": dict(sorted(paths.items())),
        "components": components,
        # Every route accepts a token; public ones also accept none.
        "security": [{"bearer": []}, {}],
        "tags": [{"name": service} for service in documents],
    }
    if unavailable:
        merged["x-bazaar-unavailable"] = sorted(unavailable)
    return merged


def _rewrite_refs(value: Any, renames: Mapping[str, str]) -> Any:
    """A deep copy of ``value`` with every reference in ``renames`` replaced."""
    if isinstance(value, dict):
        return {key: _rewrite_refs(inner, renames) for key, inner in value.items()}
    if isinstance(value, list):
        return [_rewrite_refs(inner, renames) for inner in value]
    if isinstance(value, str) and renames and value.startswith("#/components/"):
        return renames.get(value, value)
    return value


class OpenApiCatalog:
    """Fetches and merges the services' documents, keeping the result for a TTL."""

    def __init__(self, routes: RouteTable, balancer: Balancer, *, ttl: float) -> None:
        self._routes = routes
        self._balancer = balancer
        self._ttl = ttl
        self._document: bytes | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def document(self, http: aiohttp.ClientSession) -> bytes:
        """The merged document, serialized (fetched again once the cached one expires)."""
        if self._document is not None and time.monotonic() < self._expires:
            return self._document
        async with self._lock:
            if self._document is not None and time.monotonic() < self._expires:
                return self._document
            # The site (the web portal, outside /api/) serves pages, not an API document.
            services = [
                service for service in self._routes.services if service.prefix != SITE_PREFIX
            ]
            fetched = await asyncio.gather(
                *(self._fetch(http, service.pool, service.prefix) for service in services)
            )
            documents = {
                service.name: document
                for service, document in zip(services, fetched, strict=True)
                if document is not None
            }
            unavailable = [service.name for service in services if service.name not in documents]
            self._document = orjson.dumps(merge_openapi(documents, unavailable=unavailable))
            ttl = self._ttl if not unavailable else min(self._ttl, INCOMPLETE_TTL_SECONDS)
            self._expires = time.monotonic() + ttl
            return self._document

    async def _fetch(
        self, http: aiohttp.ClientSession, pool: str, prefix: str
    ) -> dict[str, Any] | None:
        replica = self._balancer.pick(pool)
        if replica is None:
            return None
        url = f"{replica.url}{prefix}/openapi.json"
        try:
            async with http.get(
                url, timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS)
            ) as response:
                if response.status != 200:
                    log.warning("openapi_fetch_failed", url=url, status=response.status)
                    return None
                document = orjson.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            log.warning("openapi_fetch_failed", url=url, error=repr(exc))
            return None
        return document if isinstance(document, dict) else None


# --- Swagger UI -----------------------------------------------------------------------

SWAGGER_UI_DIR = Path(swagger_ui_path)
DOCS_ASSETS_PREFIX = "/api/docs/assets/"

DOCS_PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Bazaar API</title>
  <link rel="icon" type="image/png" href="{DOCS_ASSETS_PREFIX}favicon-32x32.png">
  <link rel="stylesheet" href="{DOCS_ASSETS_PREFIX}swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{DOCS_ASSETS_PREFIX}swagger-ui-bundle.js"></script>
  <script src="{DOCS_ASSETS_PREFIX}swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "/api/openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      persistAuthorization: true,
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout"
    }});
  </script>
</body>
</html>
"""


def docs_assets() -> dict[str, Path]:
    """The files Swagger UI may load, by name (nothing outside this list is served)."""
    return {
        path.name: path
        for path in SWAGGER_UI_DIR.iterdir()
        if path.is_file() and path.suffix in {".js", ".css", ".png", ".map"}
    }
