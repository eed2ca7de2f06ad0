"""The CloudEvents envelope carries the context of the request that caused it."""

from __future__ import annotations

from bazaar.contracts.catalog import StockReleased
from bazaar.kit.messaging.envelope import Envelope, new_envelope
from bazaar.kit.requestcontext import current_correlation_id, current_request_id
from bazaar.kit.telemetry import current_traceparent, trace_id_of


def test_an_envelope_survives_the_wire() -> None:
    envelope = new_envelope(source="bazaar/test", type="bazaar.test.thing.happened", data={"n": 1})
    again = Envelope.from_bytes(envelope.to_bytes())
    assert again == envelope
    assert again.specversion == "1.0"


def test_a_new_message_continues_the_current_trace_and_request() -> None:
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    tokens = [
        current_traceparent.set(trace),
        current_request_id.set("req-1"),
        current_correlation_id.set("order-9"),
    ]
    try:
        envelope = new_envelope(
            source="bazaar/catalog",
            type=StockReleased.TYPE,
            data=StockReleased(reservation_id="8b6c2b8e-7a4a-4f55-9a35-7d5f2b5f3d11", reason="x"),
            user_id="u1",
        )
    finally:
        current_traceparent.reset(tokens[0])
        current_request_id.reset(tokens[1])
        current_correlation_id.reset(tokens[2])
    assert trace_id_of(envelope.traceparent) == "0af7651916cd43dd8448eb211c80319c"
    assert envelope.traceparent != trace  # a new span in the same trace
    assert envelope.requestid == "req-1"
    assert envelope.correlationid == "order-9"
    assert envelope.userid == "u1"
    assert envelope.data["reason"] == "x"


def test_without_context_a_message_starts_a_trace_of_its_own() -> None:
    envelope = new_envelope(source="bazaar/test", type="t", data={})
    assert trace_id_of(envelope.traceparent) is not None
    assert envelope.correlationid is None
