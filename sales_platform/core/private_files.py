"""Files the platform writes are private to its account, and never written through a link it did not
make. Applied once per process at start (the CLI, the Dagster definitions load, the API through the
CLI): umask 077 (folders 0700, files 0600), the data dir's own folders tightened and refused when one
is a symbolic link; files in shared folders are created with O_EXCL | O_NOFOLLOW."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sales_platform.core import settings

PRIVATE_UMASK = 0o077
# Folders under the data dir the platform writes into (incoming/ keeps the mode its operator gives it:
# senders write there; the platform creates it 0700).
DATA_FOLDERS = ("archive", "quarantine", "staging", "staging/spool", "staging/landed", "staging/cleaned",
                "staging/encrypted", "staging/rejects", "keys", "blob", "catalogue", "alerts", "lineage",
                "products", "dagster_home")
LINK_CHECKED = ("incoming", *DATA_FOLDERS)
CREATE_PRIVATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW


def linked_folders(root: Path) -> list[Path]:
    """The data dir's own folders that are symbolic links (the platform never makes one)."""
    return [root / rel for rel in LINK_CHECKED if (root / rel).is_symlink()]


def link_message(folder: Path) -> str:
    return (f"{folder} is a symbolic link: the platform writes only into folders it made; remove the "
            f"link (move what it points to into a real folder at {folder} if it is yours)")


def secure_start(root: Path | None = None) -> None:
    """Umask 077 for this process; the data dir's folders (and top-level files such as warehouse.db)
    tightened to 0700 / 0600; a symbolically linked data folder refused (settings.SettingError)."""
    os.umask(PRIVATE_UMASK)
    root = root or settings.data_dir()
    linked = linked_folders(root)
    if linked:
        raise settings.SettingError(f"{settings.DATA_DIR}: {link_message(linked[0])}")
    if not root.is_dir() or root.is_symlink():
        return
    _tighten(root, 0o700)
    for entry in root.iterdir():
        if entry.is_file() and not entry.is_symlink():
            _tighten(entry, 0o600)
    for rel in DATA_FOLDERS:
        if (root / rel).is_dir():
            _tighten(root / rel, 0o700)


def _tighten(path: Path, mode: int) -> None:
    try:
        info = os.lstat(path)
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & ~mode:
            os.chmod(path, stat.S_IMODE(info.st_mode) & mode, follow_symlinks=False)
    except (FileNotFoundError, NotImplementedError, PermissionError):
        pass  # gone, or not ours: the link and owner checks say the rest


def create_private(path: Path) -> int:
    """A new file, 0600, never through a link (a leftover at the name is removed first: the name is
    the platform's, whatever is there is a stale temp file or was planted)."""
    try:
        os.unlink(path)  # removes a link itself, never its target
    except FileNotFoundError:
        pass
    return os.open(path, CREATE_PRIVATE, 0o600)


def private_folder(path: Path) -> Path:
    """``path`` as a real folder (0700 when made); a symbolic link there is refused."""
    if path.is_symlink():
        raise settings.SettingError(link_message(path))
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path
