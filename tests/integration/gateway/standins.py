"""Real HTTP servers that stand in for the services behind the gateway in its tests.

* :class:`AuthStandIn` has the HTTP shape of the auth service the gateway depends
  on: ``/api/auth/jwks.json`` with keys the test generates, the internal revocation
  feed ``/internal/revocations?after=``, and ``/healthz``.
* :class:`EchoUpstream` answers any path with what it received (method, path,
  headers, body size), plus a few behaviours the tests steer: an event stream
  that waits for the test between events, a large streamed body, a request that
  never gets an answer, a connection dropped before the answer.

They are aiohttp servers on free loopback ports, run in the test's event loop, or
in a process of their own (``python -m tests.integration.gateway.replica_process``)
when a test must kill one.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from bazaar.stack.ports import free_port

ISSUER = "https://bazaar.test/auth"
AUDIENCE = "bazaar-test"


# --- keys and tokens ------------------------------------------------------------------


@dataclass
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def generate(cls, kid: str) -> SigningKey:
        return cls(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        jwk.update(kid=self.kid, use="sig", alg="RS256")
        return jwk

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def token(self, roles: list[str] | None = None, **overrides: Any) -> str:
        """A signed access token; ``overrides`` replace or (as None) remove claims."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": str(uuid.uuid4()),
            "iat": now,
            "exp": now + 900,
            "jti": uuid.uuid4().hex,
            "roles": ["customer"] if roles is None else roles,
        }
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": self.kid})


# --- running a server -----------------------------------------------------------------


class RunningServer:
    """An aiohttp app served on a free loopback port until :meth:`stop`."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)

    async def start(self) -> RunningServer:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        await self._runner.cleanup()


# --- the auth stand-in ----------------------------------------------------------------


GATEWAY_CLIENT = ("gateway", "gateway-client-secret")


class AuthStandIn:
    """The auth service as the gateway sees it: keys, revocation feed (for a service's
    token only, as auth's), the client-credentials grant, health."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self.keys = list(keys)
        self.revoked: list[dict[str, Any]] = []
        self.jwks_fetches = 0
        self.feed_polls = 0
        self.feed_refusals = 0
        self.tokens_issued: list[str] = []
        # Tokens the feed takes: the client's latest (expire_tokens() drops them all).
        self.valid_tokens: set[str] = set()
        self.app = web.Application()
        self.app.router.add_get("/api/auth/jwks.json", self._jwks)
        self.app.router.add_get("/internal/revocations", self._revocations)
        self.app.router.add_post("/api/auth/token", self._token)
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_route("*", "/api/auth/{tail:.*}", echo)

    def revoke(self, jti: str, expires_at: int) -> None:
        self.revoked.append({"jti": jti, "expires_at": expires_at, "seq": len(self.revoked) + 1})

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_fetches += 1
        return web.json_response({"keys": [key.public_jwk() for key in self.keys]})

    def expire_tokens(self) -> None:
        self.valid_tokens.clear()

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return await echo(request)  # a user's sign-in through the gateway
        if (form.get("client_id"), form.get("client_secret")) != GATEWAY_CLIENT:
            return web.json_response({"error": "invalid_client"}, status=401)
        token = f"service-token-{len(self.tokens_issued) + 1}"
        self.tokens_issued.append(token)
        self.valid_tokens = {token}
        return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": 300})

    async def _revocations(self, request: web.Request) -> web.Response:
        presented = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if presented not in self.valid_tokens:
            self.feed_refusals += 1
            return web.json_response({"detail": "a service's token is required"}, status=401)
        self.feed_polls += 1
        after = int(request.query.get("after", "0"))
        items = [item for item in self.revoked if item["seq"] > after]
        return web.json_response({"items": items, "cursor": len(self.revoked)})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})


# --- the echo upstream ----------------------------------------------------------------


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    upstream = request.app.get(UPSTREAM_NAME, "auth")
    return web.json_response(
        {
            "upstream": upstream,
            "method": request.method,
            "path_qs": request.raw_path,
            "headers": {name: value for name, value in request.headers.items()},
            "header_names": [name.lower() for name in request.headers],
            "body_length": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
    )


UPSTREAM_NAME = web.AppKey("upstream_name", str)


class EchoUpstream:
    """A replica of some service: echoes requests, with behaviours steered by the test.

    Paths are matched by their last segment, under whatever service prefix:
    ``.../sse`` streams events, ``.../big?bytes=N`` streams N bytes, ``.../hang``
    never answers, ``.../drop`` closes the connection without answering.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.healthy = True
        self.requests = 0
        self.requests_by_path: dict[str, int] = {}
        self.sse_proceed = asyncio.Event()
        self.hang_released = asyncio.Event()
        self.app = web.Application(client_max_size=16 * 1024 * 1024)
        self.app[UPSTREAM_NAME] = name
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)

    async def _healthz(self, request: web.Request) -> web.Response:
        if not self.healthy:
            return web.json_response({"status": "sick"}, status=503)
        return web.json_response({"status": "ok", "upstream": self.name})

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        self.requests_by_path[request.path] = self.requests_by_path.get(request.path, 0) + 1
        last = request.path.rstrip("/").rsplit("/", 1)[-1]
        if last == "sse":
            return await self._sse(request)
        if last == "big":
            return await self._big(request)
        if last == "hang":
            await self.hang_released.wait()
        if last == "drop":
            assert request.transport is not None
            request.transport.abort()
            await asyncio.Event().wait()
        if last == "openapi.json":
            return web.json_response(openapi_document(request.path))
        return await echo(request)

    async def _sse(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'event: bid\ndata: {"n": 1}\n\n')
        await self.sse_proceed.wait()
        await response.write(b'event: closed\ndata: {"n": 2}\n\n')
        await response.write_eof()
        return response

    async def _big(self, request: web.Request) -> web.StreamResponse:
        total = int(request.query.get("bytes", str(4 * 1024 * 1024)))
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        block = bytes(range(256)) * 256  # 64 KiB
        sent = 0
        while sent < total:
            piece = block[: min(len(block), total - sent)]
            await response.write(piece)
            sent += len(piece)
        await response.write_eof()
        return response


def openapi_document(path: str) -> dict[str, Any]:
    """A small document in FastAPI's shape for the service at ``path``'s prefix."""
    service = path.split("/")[2]
    return {
        "openapi": "3.1.0",
        "info": {"title": service, "version": "1"},
        "paths": {
            f"/api/{service}/things": {
                "get": {
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Thing"}
                                }
                            },
                        }
                    }
                }
            }
        },
        "components": {
            "schemas": {
                "Thing": {"type": "object", "properties": {service: {"type": "string"}}},
            }
        },
    }
