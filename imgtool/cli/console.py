"""The rich console every command prints through: user text (paths, names) is never read as markup."""

from __future__ import annotations


def plain_console(**kwargs):
    """A rich Console with markup and highlighting off; style with ``rich.text.Text`` instead of ``[bold]``."""
    from rich.console import Console

    return Console(markup=False, highlight=False, **kwargs)


def styled(text: str, style: str):
    """``text`` in ``style``, whatever brackets it holds."""
    from rich.text import Text

    return Text(text, style=style)
