"""Payments: card methods (provider tokens only), payments, provider attempts and a ledger.

The service charges cards at the payment provider over HTTP and never twice: every
provider call carries an idempotency key derived from the payment's id, and a call
whose outcome is unknown leaves the payment ``processing`` until the provider is
asked and answers.
"""
