"""Spans continue the caller's trace, with or without an OTLP exporter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bazaar.kit import telemetry

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry._tracer = provider.get_tracer("test")
    try:
        yield exporter
    finally:
        telemetry._tracer = None


def test_without_an_exporter_a_span_is_just_new_ids_in_the_same_trace() -> None:
    with telemetry.span("GET /x", PARENT) as own:
        assert telemetry.current_traceparent.get() == own
        assert telemetry.trace_id_of(own) == "0af7651916cd43dd8448eb211c80319c"
        assert own != PARENT
    assert telemetry.current_traceparent.get() is None


def test_with_an_exporter_spans_are_recorded_under_the_incoming_parent(
    exported: InMemorySpanExporter,
) -> None:
    with telemetry.span("handle bazaar.orders.order.created", PARENT, kind="consumer") as own:
        pass
    (recorded,) = exported.get_finished_spans()
    assert recorded.name == "handle bazaar.orders.order.created"
    assert format(recorded.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert recorded.parent is not None
    assert format(recorded.parent.span_id, "016x") == "b7ad6b7169203331"
    assert own.split("-")[2] == format(recorded.context.span_id, "016x")


def test_garbage_traceparents_start_a_new_trace() -> None:
    with telemetry.span("GET /x", "not-a-traceparent") as own:
        assert telemetry.trace_id_of(own) is not None


def test_new_ids_are_well_formed_and_never_repeat() -> None:
    made = [telemetry.new_traceparent() for _ in range(1000)]
    for traceparent in made:
        version, trace_id, span_id, flags = traceparent.split("-")
        assert (version, flags) == ("00", "01")
        assert len(trace_id) == 32 and int(trace_id, 16) != 0
        assert len(span_id) == 16 and int(span_id, 16) != 0
    assert len({traceparent.split("-")[1] for traceparent in made}) == len(made)
    assert len({traceparent.split("-")[2] for traceparent in made}) == len(made)
