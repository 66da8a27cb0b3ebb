"""shared room: the one way a private file (secrets, password hashes, tokens) is written.

Atomic: the bytes go to a temp file beside the target, created 0600 (never briefly
world-readable), flushed to disk, then renamed over the target, so a crash mid-write leaves
either the old file or the new one, never a truncated secret. Touches: the file it is given
and its directory.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

PRIVATE_MODE = 0o600


def write_private_file(
    path: Path, data: str | bytes, *, mode: int = PRIVATE_MODE, owner_uid: int | None = None
) -> None:
    """Replace `path` with `data` atomically, with `mode` (and owner) from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            if owner_uid is not None:
                os.fchown(handle.fileno(), owner_uid, owner_uid)
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # The rename itself is durable only once the directory entry is on disk.
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
