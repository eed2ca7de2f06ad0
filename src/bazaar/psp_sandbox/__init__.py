"""The payment provider sandbox: a separate process standing in for an external provider.

It answers a provider-shaped HTTP API (``/v1/tokens``, ``/v1/charges``, refunds),
behaves by card number as API.md's table says, and keeps its own append-only ledger
so that tests can compare what the provider did with what the platform believes.
It is not behind the gateway, has no database and imports nothing but the kit.
"""
