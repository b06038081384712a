"""The rich console every command prints through: user text (paths, names) is never read as markup."""

from __future__ import annotations


def plain_console(**kwargs):
    """A rich Console with markup and highlighting off; style with ``rich.text.Text`` instead of ``[bold]``."""
    # not at the top: image --json and --quiet, info --json load this module and print no rich text (~13 ms)
    from rich.console import Console

    return Console(markup=False, highlight=False, **kwargs)


def styled(text: str, style: str):
    """``text`` in ``style``, whatever brackets it holds."""
    from rich.text import Text  # not at the top: as in plain_console (~12 ms)

    return Text(text, style=style)
