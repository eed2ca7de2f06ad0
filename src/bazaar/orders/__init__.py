"""Orders: a customer's purchase of catalog items, and the saga that carries it out."""
