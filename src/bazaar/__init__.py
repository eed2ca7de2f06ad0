"""Bazaar: a marketplace backend of goods, services and auctions."""

__version__ = "0.1.0"
