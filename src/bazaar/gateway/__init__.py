"""The API gateway: the one door every client, browser and service call goes through.

It checks tokens and roles against a route table (``routes.yaml``), limits rates,
picks a healthy replica of the service and streams the exchange both ways. It owns
no database and imports no service: only :mod:`bazaar.kit` and third-party libraries.
"""
