"""Messaging over Kafka: one envelope, one outbox, one inbox, one relay, one consumer loop."""
