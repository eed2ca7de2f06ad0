"""Every HTTP dependency and endpoint of every service is a coroutine function.

FastAPI runs a plain ``def`` dependency or endpoint on a worker thread: a thread hop
and a fight for the GIL on every request, which the profiles of the order benchmark
showed as a sizeable share of the services' CPU.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from types import ModuleType

from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

import bazaar.portal.pages
from bazaar.kit.http import health_router

API_MODULES = [
    f"bazaar.{service}.api"
    for service in ("auth", "catalog", "orders", "payments", "auctions", "support", "psp_sandbox")
]


def _modules() -> Iterator[ModuleType]:
    for name in API_MODULES:
        yield importlib.import_module(name)
    for page in pkgutil.iter_modules(bazaar.portal.pages.__path__):
        yield importlib.import_module(f"bazaar.portal.pages.{page.name}")


def _routers() -> Iterator[APIRouter]:
    for module in _modules():
        yield from (value for value in vars(module).values() if isinstance(value, APIRouter))
    yield health_router(list)


def _plain_functions(dependant: Dependant) -> Iterator[str]:
    call = dependant.call
    if call is not None and not (
        inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)
    ):
        yield f"{getattr(call, '__module__', '?')}.{getattr(call, '__qualname__', call)}"
    for inner in dependant.dependencies:
        yield from _plain_functions(inner)


def test_no_dependency_or_endpoint_runs_on_a_worker_thread() -> None:
    routes = [route for router in _routers() for route in router.routes]
    api_routes = [route for route in routes if isinstance(route, APIRoute)]
    assert len(api_routes) > 50
    plain = {name for route in api_routes for name in _plain_functions(route.dependant)}
    assert plain == set()
