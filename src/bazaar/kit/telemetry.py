"""Tracing: W3C trace context across HTTP and Kafka, exported by OTLP when configured.

The current ``traceparent`` lives in a context variable, set by the HTTP middleware
from the incoming header and by the consumer from the message's envelope, so that an
event written to the outbox carries the trace of the request or message that caused
it, and every log line carries its ``trace_id``.

With ``BAZAAR_OTLP_ENDPOINT`` set, each request and each handled message is also an
OpenTelemetry span (server / consumer kind, parented by the incoming traceparent),
exported by OTLP over HTTP. Without it no span objects are made at all: ids are
generated directly, which keeps the hot path cheap.
"""

from __future__ import annotations

import contextvars
import random
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

current_traceparent: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_traceparent", default=None
)

_propagator = TraceContextTextMapPropagator()
_tracer: trace.Tracer | None = None


def new_traceparent(parent: str | None = None) -> str:
    """A traceparent for a new span: same trace as ``parent`` when valid, else a new trace.

    Ids come from ``random``, as OpenTelemetry's own id generator makes them: they must be
    unique, not secret, and ``secrets`` asks the kernel for every one (a system call per
    request and per message, a few per cent of a consumer's CPU on this platform's VMs).
    """
    trace_id = trace_id_of(parent) if parent else None
    if trace_id is None:
        trace_id = f"{random.getrandbits(128) or 1:032x}"
    return f"00-{trace_id}-{random.getrandbits(64) or 1:016x}-01"


def trace_id_of(traceparent: str | None) -> str | None:
    """The 32-hex trace id of a W3C traceparent, or None when it is not one."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or parts[1] == "0" * 32:
        return None
    try:
        int(parts[1], 16)
    except ValueError:
        return None
    return parts[1]


def configure_tracing(service: str, otlp_endpoint: str | None) -> None:
    """Install an OTLP-exporting tracer provider when an endpoint is configured."""
    global _tracer
    if not otlp_endpoint:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": f"bazaar-{service}"}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces"))
    )
    trace.set_tracer_provider(provider)
    _tracer = provider.get_tracer("bazaar")


@contextmanager
def span(name: str, parent: str | None, *, kind: str = "server") -> Iterator[str]:
    """Run a block as one span under ``parent``; yields the block's own traceparent.

    ``kind``: ``server`` (an HTTP request) or ``consumer`` (a Kafka message).
    """
    if _tracer is None:
        own = new_traceparent(parent)
        token = current_traceparent.set(own)
        try:
            yield own
        finally:
            current_traceparent.reset(token)
        return
    context = _propagator.extract({"traceparent": parent}) if parent else None
    span_kind = SpanKind.CONSUMER if kind == "consumer" else SpanKind.SERVER
    with _tracer.start_as_current_span(name, context=context, kind=span_kind) as current:
        carrier: dict[str, str] = {}
        _propagator.inject(carrier)
        own = carrier.get("traceparent") or new_traceparent(parent)
        token = current_traceparent.set(own)
        try:
            yield own
        except BaseException as exc:
            current.record_exception(exc)
            raise
        finally:
            current_traceparent.reset(token)
