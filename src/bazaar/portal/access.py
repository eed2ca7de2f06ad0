"""What every page depends on: the portal's parts, the session, who may see the page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from bazaar.portal.client import PlatformClient, SignInRequired
from bazaar.portal.rendering import Pages
from bazaar.portal.session import Session, SessionCodec, session_of
from bazaar.portal.settings import PortalSettings

STAFF_ROLES = ("support", "admin")


class PageForbidden(Exception):
    """The signed-in user's roles do not open this page."""

    def __init__(self, roles: tuple[str, ...]) -> None:
        super().__init__(f"This page is for: {', '.join(roles)}")
        self.roles = roles


@dataclass(frozen=True)
class Portal:
    """Built once in the lifespan; what the pages work with."""

    settings: PortalSettings
    client: PlatformClient
    pages: Pages
    codec: SessionCodec


def portal_of(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


async def signed_in_session(request: Request) -> Session:
    session = session_of(request)
    if not session.signed_in:
        raise SignInRequired()
    return session


def roles_required(*roles: str) -> Session:
    """A dependency: the session of a signed-in user holding one of ``roles``."""

    async def dependency(session: Annotated[Session, Depends(signed_in_session)]) -> Session:
        if not session.has_any_role(*roles):
            raise PageForbidden(roles)
        return session

    return Depends(dependency)  # type: ignore[no-any-return]


async def _portal(request: Request) -> Portal:
    # Dependencies are coroutines: FastAPI runs a plain function on a worker thread.
    return portal_of(request)


async def _any_session(request: Request) -> Session:
    return session_of(request)


PortalDep = Annotated[Portal, Depends(_portal)]
AnySession = Annotated[Session, Depends(_any_session)]
UserSession = Annotated[Session, Depends(signed_in_session)]
StaffSession = Annotated[Session, roles_required(*STAFF_ROLES)]
SellerSession = Annotated[Session, roles_required("seller", "admin")]
AdminSession = Annotated[Session, roles_required("admin")]
