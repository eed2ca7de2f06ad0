"""The route table: which public paths go to which upstream pool, and who may call them.

The table is a config file (``routes.yaml``, packaged beside this module) loaded
once at start. Each service entry owns one prefix ``/api/<service>``; its rules say,
per method and path pattern, which callers are let through:

* ``public``: anyone, anonymous included (a token that is sent must still be valid);
* ``authenticated``: any valid token;
* a list of roles (``customer``, ``seller``, ``support``, ``admin``, ``service``).

Patterns are full paths where ``*`` (or ``{name}``) is one segment and a trailing
``/**`` is any rest, none included. The first rule that matches wins; when none does,
the service's ``default`` applies (and without one the path is unknown: 404).

Finer rules (is this the caller's order?) stay in the services. Matching is one
dictionary lookup for the prefix and one precompiled regular expression per
service and method, whose alternatives are the rules in order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml

from bazaar.kit.tokens import ALL_ROLES, ROLE_SERVICE

AccessKind = Literal["public", "authenticated", "roles"]
KNOWN_ROLES = ALL_ROLES | {ROLE_SERVICE}
# A service entry with this prefix serves every path outside /api/ (the web portal).
SITE_PREFIX = "/"
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_SEGMENT = re.compile(r"^[A-Za-z0-9._~!$&'()+,;=:@-]+$")


class RouteTableError(ValueError):
    """The route table file is not valid; the message says where."""


@dataclass(frozen=True, slots=True)
class Access:
    """Who a rule lets through."""

    kind: AccessKind
    roles: frozenset[str] = frozenset()

    def describe(self) -> str:
        return self.kind if self.kind != "roles" else ", ".join(sorted(self.roles))


PUBLIC = Access("public")
AUTHENTICATED = Access("authenticated")


@dataclass(frozen=True, slots=True)
class RouteRule:
    methods: frozenset[str]  # "*" means every method
    pattern: str
    access: Access


@dataclass(slots=True)
class ServiceRoute:
    """One service's part of the table: its prefix, its pool and its rules."""

    name: str
    prefix: str
    pool: str
    rules: list[RouteRule]
    default: Access | None
    # Per method: one regular expression whose alternatives are the rules, in order,
    # and the answer of each alternative, made once (not one object per request).
    _compiled: dict[str, tuple[re.Pattern[str], list[RouteMatch]]] = field(default_factory=dict)
    _default_match: RouteMatch | None = None

    def compile(self) -> None:
        methods = {m for rule in self.rules for m in rule.methods if m != "*"}
        for method in {*HTTP_METHODS, *methods, "*"}:
            applicable = [
                rule
                for rule in self.rules
                if "*" in rule.methods
                or method in rule.methods
                # A HEAD is a GET without the body: the GET rules apply.
                or (method == "HEAD" and "GET" in rule.methods)
            ]
            alternatives = "|".join(
                f"(?P<r{index}>{_pattern_regex(rule.pattern)})"
                for index, rule in enumerate(applicable)
            )
            regex = re.compile(rf"\A(?:{alternatives})\Z" if alternatives else r"(?!)")
            self._compiled[method] = (regex, [RouteMatch(self, rule.access) for rule in applicable])
        self._default_match = None if self.default is None else RouteMatch(self, self.default)

    def match(self, method: str, path: str) -> RouteMatch | None:
        """The rule for ``method path`` (already known to be under the prefix), if any."""
        compiled = self._compiled.get(method) or self._compiled["*"]
        regex, matches = compiled
        found = regex.match(path)
        if found is None:
            return self._default_match
        group = found.lastgroup
        assert group is not None
        return matches[int(group[1:])]


@dataclass(frozen=True, slots=True)
class RouteMatch:
    service: ServiceRoute
    access: Access


class RouteTable:
    """The public surface: ``/api/<service>`` prefixes and their rules."""

    def __init__(self, services: list[ServiceRoute]) -> None:
        self.services = services
        self._by_segment: dict[str, ServiceRoute] = {}
        # The entry with prefix "/": every path outside /api/ (the web portal).
        self._site: ServiceRoute | None = None
        for service in services:
            if service.prefix == SITE_PREFIX:
                if self._site is not None:
                    raise RouteTableError("two services claim the prefix /")
                service.compile()
                self._site = service
                continue
            segment = service.prefix.removeprefix("/api/")
            if segment in self._by_segment:
                raise RouteTableError(f"two services claim the prefix {service.prefix}")
            service.compile()
            self._by_segment[segment] = service

    def service(self, path: str) -> ServiceRoute | None:
        """The service whose prefix ``path`` is under, if any."""
        if not path.startswith("/api/"):
            return None if path == "/api" else self._site
        segment, _, _ = path[5:].partition("/")
        return self._by_segment.get(segment)

    def match(self, method: str, path: str) -> RouteMatch | None:
        """The service and access rule for a request, or None for an unknown path."""
        service = self.service(path)
        if service is None:
            return None
        return service.match(method, path)

    @property
    def pools(self) -> list[str]:
        return sorted({service.pool for service in self.services})


# --- loading ------------------------------------------------------------------------


def packaged_routes_file() -> Path:
    return Path(str(files("bazaar.gateway") / "routes.yaml"))


def load_route_table(path: Path | None = None) -> RouteTable:
    """Read and check a route table file (the packaged one when ``path`` is None)."""
    path = path or packaged_routes_file()
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RouteTableError(f"cannot read the route table {path}: {exc}") from exc
    return parse_route_table(document, source=str(path))


def parse_route_table(document: Any, *, source: str = "<route table>") -> RouteTable:
    if not isinstance(document, dict) or not isinstance(document.get("services"), list):
        raise RouteTableError(f"{source}: expected a mapping with a 'services' list")
    services = []
    for index, entry in enumerate(document["services"]):
        where = f"{source}: services[{index}]"
        if not isinstance(entry, dict):
            raise RouteTableError(f"{where}: expected a mapping")
        name = _required_str(entry, "name", where)
        prefix = entry.get("prefix", f"/api/{name}")
        if not isinstance(prefix, str) or not (
            prefix == SITE_PREFIX or re.fullmatch(r"/api/[a-z0-9][a-z0-9_-]*", prefix)
        ):
            raise RouteTableError(
                f"{where}: prefix must be /api/<service> or / (the site), got {prefix!r}"
            )
        pool = entry.get("pool", name)
        if not isinstance(pool, str) or not pool:
            raise RouteTableError(f"{where}: pool must be a name")
        default = entry.get("default")
        rules = []
        for rule_index, rule in enumerate(entry.get("rules") or []):
            rule_where = f"{where}.rules[{rule_index}]"
            if not isinstance(rule, dict):
                raise RouteTableError(f"{rule_where}: expected a mapping")
            pattern = _required_str(rule, "path", rule_where)
            under = (
                not pattern.startswith("/api/")
                if prefix == SITE_PREFIX
                else pattern == prefix or pattern.startswith(prefix + "/")
            )
            if not under:
                raise RouteTableError(f"{rule_where}: {pattern} is not under {prefix}")
            _check_pattern(pattern, rule_where)
            rules.append(
                RouteRule(
                    methods=_methods(rule.get("methods", rule.get("method", "*")), rule_where),
                    pattern=pattern,
                    access=parse_access(rule.get("allow"), rule_where),
                )
            )
        services.append(
            ServiceRoute(
                name=name,
                prefix=prefix,
                pool=pool,
                rules=rules,
                default=None if default is None else parse_access(default, f"{where}.default"),
            )
        )
    return RouteTable(services)


def parse_access(value: Any, where: str) -> Access:
    if value == "public":
        return PUBLIC
    if value == "authenticated":
        return AUTHENTICATED
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and value and all(isinstance(role, str) for role in value):
        unknown = set(value) - KNOWN_ROLES
        if unknown:
            raise RouteTableError(f"{where}: unknown roles {sorted(unknown)}")
        return Access("roles", frozenset(value))
    raise RouteTableError(
        f"{where}: allow must be 'public', 'authenticated' or a list of roles, got {value!r}"
    )


def _methods(value: Any, where: str) -> frozenset[str]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise RouteTableError(f"{where}: methods must be a method or a list of methods")
    return frozenset(name.upper() for name in names)


def _required_str(entry: dict[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise RouteTableError(f"{where}: '{key}' is required")
    return value


def _check_pattern(pattern: str, where: str) -> None:
    segments = pattern.split("/")[1:]
    for position, segment in enumerate(segments):
        if segment == "**":
            if position != len(segments) - 1:
                raise RouteTableError(f"{where}: '**' may only end a pattern")
        elif segment == "*" or re.fullmatch(r"\{[A-Za-z_][A-Za-z0-9_]*\}", segment):
            continue
        elif not _SEGMENT.match(segment):
            raise RouteTableError(f"{where}: bad path segment {segment!r}")


def _pattern_regex(pattern: str) -> str:
    """The regular expression of a pattern (no named groups: the caller names each rule)."""
    parts = []
    for segment in pattern.split("/")[1:]:
        if segment == "**":
            parts.append("(?:/.*)?")
        elif segment == "*" or segment.startswith("{"):
            parts.append("/[^/]+")
        else:
            parts.append("/" + re.escape(segment))
    return "".join(parts)
