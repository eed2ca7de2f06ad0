"""The published contracts between services: event and command schemas, topic names.

This is the only code services share besides the platform library. Events are past
tense, named and published by their owner (``bazaar.catalog.item.created`` on topic
``bazaar.catalog``); commands are imperative and go to the receiving service's
command topic (``bazaar.catalog.commands``). Every schema is versioned through its
``dataschema``; a breaking change gets a new version beside the old one.
"""
