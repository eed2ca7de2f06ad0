"""Who is calling and whether the route lets them: the token check and the role check.

A request that sends ``Authorization`` must send a valid Bearer token, even on a
public route (a forged or revoked token is refused, never ignored). A token that
verified once costs a dictionary lookup until its ``exp`` (the verifier's cache),
plus a set lookup for revocation.
"""

from __future__ import annotations

from bazaar.gateway.routing import Access
from bazaar.kit.errors import Forbidden, InvalidToken
from bazaar.kit.tokens import Principal, TokenVerifier, bearer_token


async def identify(verifier: TokenVerifier, authorization: str | None) -> Principal | None:
    """The caller behind an ``Authorization`` header; None when there is none."""
    token = bearer_token(authorization)
    if token is None:
        return None
    principal = verifier.cached(token)
    if principal is None:
        principal = await verifier.verify(token)
    return principal


def authorize(access: Access, principal: Principal | None) -> None:
    """Raise unless ``access`` admits ``principal`` (401 when a token is needed, else 403)."""
    if access.kind == "public":
        return
    if principal is None:
        raise InvalidToken("An access token is required")
    if access.kind == "roles" and principal.roles.isdisjoint(access.roles):
        raise Forbidden(f"This needs one of the roles: {access.describe()}")
