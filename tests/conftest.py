"""Fixtures for every tier: the real parts come from :mod:`bazaar.kit.testing`."""

pytest_plugins = ["bazaar.kit.testing"]
