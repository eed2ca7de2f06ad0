"""The support service: the history of every operation, what needs a person, and the
corrective actions support staff take through the owning services."""
