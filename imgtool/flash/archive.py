"""Release archives: ``NAME-VERSION-CHIP.zip`` of a pack's files, the same bytes for the same files.

Nothing in the archive depends on when, where or by whom it was made: member
names sorted, one fixed timestamp (1980-01-01 00:00,
the earliest a zip can hold, or ``SOURCE_DATE_EPOCH`` in UTC when it is set),
Unix regular-file mode 0644, no extra fields or comment, DEFLATE at level 9.
The compressed bytes come from zlib; builds with one zlib (CPython's bundled or
the system's classic zlib) agree, a different deflate implementation
(zlib-ng) may compress differently.
"""

from __future__ import annotations

import io
import re
import time

from imgtool.environment import ENV_SOURCE_DATE_EPOCH
from imgtool.errors import UsageError
from imgtool.output_names import UNVERSIONED

#: The zip format's earliest date (DOS time); also the timestamp without SOURCE_DATE_EPOCH.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
ZIP_LATEST_YEAR = 2107
#: Regular file, rw-r--r--, in the high 16 bits of a zip entry's external attributes.
MEMBER_MODE = 0o100644
UNIX_ATTR_SHIFT = 16
ZIP_SYSTEM_UNIX = 3
COMPRESS_LEVEL = 9
#: Characters kept in a version for a file name; others become ``_``.
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


ARCHIVE_SUFFIX = ".zip"


def archive_name(name: str, version: str | None, chip: str) -> str:
    """``NAME-VERSION-CHIP.zip``, the version made safe for a file name (``UNVERSIONED`` when empty)."""
    return f"{name}-{safe_version(version)}-{chip}{ARCHIVE_SUFFIX}"


def safe_version(version: str | None) -> str:
    """The app descriptor's version with anything but letters, digits and ``._+-`` replaced by ``_``."""
    cleaned = _UNSAFE.sub("_", version or "").lstrip(".-")
    return cleaned or UNVERSIONED


def archive_timestamp(raw: str | None = None) -> tuple[int, int, int, int, int, int]:
    """The member timestamp: ``raw`` (a ``SOURCE_DATE_EPOCH`` value, UTC, clamped to what a zip can hold), else 1980-01-01.

    The CLI passes the environment's ``SOURCE_DATE_EPOCH``; blank counts as unset.
    """
    if raw is None or raw.strip() == "":
        return ZIP_EPOCH
    try:
        seconds = int(raw.strip())
    except ValueError:
        raise UsageError(
            f"{ENV_SOURCE_DATE_EPOCH}={raw!r} is not a number of seconds since 1970; set it to e.g. "
            "$(git log -1 --format=%ct) or unset it",
            field=ENV_SOURCE_DATE_EPOCH,
        ) from None
    stamp = time.gmtime(max(seconds, 0))[:6]
    if stamp < ZIP_EPOCH:
        return ZIP_EPOCH
    if stamp[0] > ZIP_LATEST_YEAR:
        return (ZIP_LATEST_YEAR, 12, 31, 23, 59, 58)
    return stamp


def release_archive(files: dict[str, bytes], date_time=ZIP_EPOCH) -> bytes:
    """A zip of ``files`` (name → bytes) at the top level, members sorted by name, identical for identical input."""
    import zipfile  # only here: every pack names the archive (to remove a stale one), few write it

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=date_time)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = ZIP_SYSTEM_UNIX
            info.external_attr = MEMBER_MODE << UNIX_ATTR_SHIFT
            zf.writestr(info, bytes(files[name]), compresslevel=COMPRESS_LEVEL)
    return buffer.getvalue()


__all__ = ["ARCHIVE_SUFFIX", "archive_name", "archive_timestamp", "release_archive", "safe_version"]
