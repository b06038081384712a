"""The settings a user gives through environment variables, as one value the CLI reads once and passes down.

Library code never reads the process environment or the current directory: it takes these values as
parameters whose defaults ignore the environment, so a program calling imgtool gets the same
result whatever its process environment holds. Only :mod:`imgtool.cli.main` calls
:meth:`UserEnvironment.from_environ`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

#: imgtool's cache folder (pinned bootloaders) instead of the platform's user cache.
ENV_CACHE_DIR = "IMGTOOL_CACHE_DIR"
#: Where pinned bootloaders come from instead of their pinned addresses: an http(s) base URL or a folder.
ENV_MIRROR = "IMGTOOL_BOOTLOADER_MIRROR"
#: Set by CI services; no download progress bar then.
ENV_CI = "CI"
#: The serial port when ``--port`` is not given (ESP-IDF's idf.py reads it too).
ENV_PORT = "ESPPORT"
#: espflash's and esptool's names for it; when several are set the first of :data:`PORT_VARIABLES` wins.
ENV_ESPFLASH_PORT = "ESPFLASH_PORT"
ENV_ESPTOOL_PORT = "ESPTOOL_PORT"
PORT_VARIABLES = (ENV_ESPFLASH_PORT, ENV_ESPTOOL_PORT, ENV_PORT)
#: The monitor's baud rate when ``--baud`` (``--monitor-baud``) is not given, as espflash reads it.
ENV_MONITOR_BAUD = "MONITOR_BAUD"
#: Reproducible-builds timestamp (seconds since 1970, UTC) for ``--archive`` members.
ENV_SOURCE_DATE_EPOCH = "SOURCE_DATE_EPOCH"
#: The cache folder's name under the platform's user cache.
CACHE_APP_NAME = "imgtool"


def user_cache_dir() -> Path:
    """The platform's per-user cache folder for imgtool (``~/.cache/imgtool``, ``%LOCALAPPDATA%\\imgtool\\Cache``...)."""
    from platformdirs import user_cache_dir as platform_cache_dir  # not at the top: ~5 ms, only where the cache is used

    return Path(platform_cache_dir(CACHE_APP_NAME, appauthor=False))


class UserEnvironment:
    """What the environment variables above say, blanks read as unset.

    A plain class: every command defines it, a NamedTuple costs ~0.2 ms there.
    """

    __slots__ = ("cache_dir", "mirror", "ci", "port", "source_date_epoch", "monitor_baud")

    def __init__(
        self,
        cache_dir: Path | None = None,
        mirror: str = "",
        ci: bool = False,
        port: str | None = None,
        source_date_epoch: str | None = None,
        monitor_baud: str | None = None,
    ):
        self.cache_dir = cache_dir  # None: the platform's user cache
        self.mirror = mirror
        self.ci = ci
        self.port = port
        self.source_date_epoch = source_date_epoch
        self.monitor_baud = monitor_baud  # as typed; the CLI checks it

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> UserEnvironment:
        cache = environ.get(ENV_CACHE_DIR, "")
        port = next((value for name in PORT_VARIABLES if (value := environ.get(name, "").strip())), "")
        return cls(
            cache_dir=Path(cache).expanduser() if cache else None,
            mirror=environ.get(ENV_MIRROR, "").strip(),
            ci=bool(environ.get(ENV_CI)),
            port=port or None,
            source_date_epoch=environ.get(ENV_SOURCE_DATE_EPOCH),
            monitor_baud=environ.get(ENV_MONITOR_BAUD, "").strip() or None,
        )

    def cache(self) -> Path:
        """imgtool's cache folder: ``$IMGTOOL_CACHE_DIR`` when it was set, else the platform's user cache."""
        return self.cache_dir if self.cache_dir is not None else user_cache_dir()


__all__ = [
    "ENV_CACHE_DIR",
    "ENV_CI",
    "ENV_MIRROR",
    "ENV_ESPFLASH_PORT",
    "ENV_ESPTOOL_PORT",
    "ENV_MONITOR_BAUD",
    "ENV_PORT",
    "PORT_VARIABLES",
    "ENV_SOURCE_DATE_EPOCH",
    "UserEnvironment",
    "user_cache_dir",
]
