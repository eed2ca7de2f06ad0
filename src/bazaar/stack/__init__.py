"""``bazaar up``: the embedded PostgreSQL and broker, and a supervisor for every service."""
