"""The platform library every service shares: settings, database, messaging, tokens, HTTP.

It imports no service (an import-linter contract enforces this), so that what is
common stays common and a service can be read without reading the others.
"""
