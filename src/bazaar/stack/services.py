"""The table of processes the platform runs: one line per service.

Everything else follows from a service's name by convention: its package is
``bazaar.<name>``, its app factory ``bazaar.<name>.app:create_app``, its settings
prefix ``BAZAAR_<NAME>_``, its Alembic directory ``bazaar/<name>/migrations`` and its
database ``bazaar_<name>``. Adding a service to ``bazaar up`` is adding its line to
:data:`SERVICES`.

Nothing here imports a service: factories are named by string and loaded by the
process that serves them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

Kind = Literal["asgi", "main"]


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """How to run and provision one kind of process.

    ``kind="asgi"``: ``app`` names a factory returning an ASGI app, served by uvicorn.
    ``kind="main"``: ``app`` names a function that serves by itself until SIGTERM.
    ``env`` adds settings of the service's own (names without the ``BAZAAR_<NAME>_``
    prefix); values may name the stack's endpoints: ``{gateway_url}``, ``{psp_url}``,
    ``{data_dir}``.
    """

    name: str
    default_port: int
    app: str = ""
    kind: Kind = "asgi"
    database: bool = True
    # Gets client credentials (client id = its name) for calls through the gateway.
    client: bool = True
    health_path: str = "/healthz"
    readiness_path: str | None = "/readyz"
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def package(self) -> str:
        return f"bazaar.{self.name}"

    @property
    def factory(self) -> str:
        return self.app or f"{self.package}.app:create_app"

    @property
    def env_prefix(self) -> str:
        return f"BAZAAR_{self.name.upper()}_"

    def health_paths(self) -> tuple[str, ...]:
        """What must answer 200 before the process counts as up."""
        if self.readiness_path is None:
            return (self.health_path,)
        return (self.health_path, self.readiness_path)


# The services behind the gateway, started in this order (replicas on request).
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("auth", 8101, client=False),
    ServiceSpec("catalog", 8102),
    # Uncomment as each service's app lands:
    ServiceSpec("orders", 8103),
    ServiceSpec("payments", 8104, env=MappingProxyType({"PSP_URL": "{psp_url}"})),
    ServiceSpec("auctions", 8105),
    ServiceSpec("support", 8106),
    # The web portal: no database, no client credentials (it calls the API with its
    # users' tokens); its session secret is kept in the data directory.
    ServiceSpec(
        "portal",
        8107,
        database=False,
        client=False,
        env=MappingProxyType({"DATA_DIR": "{data_dir}/portal"}),
    ),
)

PSP_SANDBOX = ServiceSpec(
    "psp_sandbox",
    8099,
    database=False,
    client=False,
    readiness_path=None,
    env=MappingProxyType({"DATA_DIR": "{data_dir}/psp_sandbox"}),
)

GATEWAY = ServiceSpec(
    "gateway",
    8000,
    app="bazaar.gateway.app:serve",
    kind="main",
    database=False,
    # Its client-credentials token reads auth's revocation feed.
    client=True,
    readiness_path=None,
    # The portal calls the API on behalf of browsers from this machine: keep the browser's
    # address it forwards (auth throttles sign-ins per address). On one machine this also
    # trusts any local client's X-Forwarded-For; production names its proxies instead.
    env=MappingProxyType({"TRUSTED_PROXIES": '["127.0.0.1/32"]'}),
)


def all_specs(services: tuple[ServiceSpec, ...] = SERVICES) -> tuple[ServiceSpec, ...]:
    return (*services, PSP_SANDBOX, GATEWAY)


def spec_named(name: str, services: tuple[ServiceSpec, ...] = SERVICES) -> ServiceSpec:
    """The spec of ``name`` (``psp-sandbox`` and ``psp_sandbox`` both work)."""
    wanted = name.replace("-", "_")
    for spec in all_specs(services):
        if spec.name == wanted:
            return spec
    known = ", ".join(spec.name for spec in all_specs(services))
    raise KeyError(f"unknown service {name!r} (known: {known})")


def with_database(services: tuple[ServiceSpec, ...] = SERVICES) -> tuple[ServiceSpec, ...]:
    return tuple(spec for spec in services if spec.database)
