"""The catalog of goods and services: items, their prices and their stock."""
