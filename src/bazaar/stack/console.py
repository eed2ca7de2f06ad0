"""How ``bazaar up`` looks on a terminal: prefixed, coloured log lines and the URL panel."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

# Colours for process prefixes, given out in order of first appearance.
_PALETTE = (
    "cyan",
    "green",
    "magenta",
    "yellow",
    "blue",
    "bright_cyan",
    "bright_green",
    "bright_magenta",
    "bright_yellow",
    "bright_blue",
)
_LEVEL_STYLES = {"info": "bold", "warning": "bold yellow", "error": "bold red"}


class ConsoleOutput:
    """Writes every child's lines as ``[catalog.1] …`` and the supervisor's as ``[stack] …``.

    Called from the output threads of every child, so colour assignment is locked;
    rich's console serialises the writes themselves.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False, soft_wrap=True)
        self._colours: dict[str, str] = {}
        self._lock = threading.Lock()

    def _colour(self, process: str) -> str:
        service = process.rsplit(".", 1)[0]
        with self._lock:
            if service not in self._colours:
                self._colours[service] = _PALETTE[len(self._colours) % len(_PALETTE)]
            return self._colours[service]

    def line(self, process: str, text: str) -> None:
        prefix = Text(f"[{process}] ", style=self._colour(process))
        self.console.print(prefix + Text.from_ansi(text), soft_wrap=True)

    def event(self, text: str, *, level: str = "info") -> None:
        prefix = Text("[stack] ", style="bold white")
        self.console.print(prefix + Text(text, style=_LEVEL_STYLES.get(level, "")), soft_wrap=True)


class QuietOutput:
    """Drops children's lines (they stay in each process's ``recent``); keeps the events."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)

    def line(self, process: str, text: str) -> None:
        return None

    def event(self, text: str, *, level: str = "info") -> None:
        self.console.print(Text(f"[stack] {text}"), soft_wrap=True)


def ready_panel(endpoints: Sequence[tuple[str, str]], title: str) -> Panel:
    """The panel ``bazaar up`` shows once every process answers its health checks."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(style="cyan", overflow="fold")
    for label, url in endpoints:
        table.add_row(label, url)
    return Panel(table, title=title, title_align="left", border_style="green", expand=False)
