"""The support service's refusals."""

from __future__ import annotations

from bazaar.kit.errors import NotFound


class ActionNotFound(NotFound):
    code = "action_not_found"
    title = "No such support action"
