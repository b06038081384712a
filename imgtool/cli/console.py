"""The rich console every command prints through: user text (paths, names) is never read as markup."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text


def plain_console(**kwargs):
    """A rich Console with markup and highlighting off; style with ``rich.text.Text`` instead of ``[bold]``."""
    return Console(markup=False, highlight=False, **kwargs)


def styled(text: str, style: str):
    """``text`` in ``style``, whatever brackets it holds."""
    return Text(text, style=style)
