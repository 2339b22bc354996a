"""What the scripts (and benchmarks) share: the checkout, the data folder, the commit.

Imported by ``scripts/*.py`` run as ``python scripts/NAME.py`` (their folder is
on ``sys.path``) and by ``benchmarks/*.py``, which put ``scripts/`` on
``sys.path`` first. Package versions come from :mod:`tla_edge.host`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
"""The checkout this file belongs to."""


def data_dir(name: str = "nuaa-train") -> Path:
    """``$TLA_EDGE_DATA/<name>``, else ``../shared/data/<name>`` next to the checkout.

    Args:
      name: the dataset folder inside the data folder (``""``: the data folder itself).
    """
    root = os.environ.get("TLA_EDGE_DATA")
    base = Path(root) if root else REPO.parent / "shared" / "data"
    return base / name if name else base


def teacher_dir() -> Path:
    """The Silent-Face teacher's ONNX files: ``$TLA_EDGE_TEACHER_DIR``, else the data folder's sibling
    ``weights/teachers/silent-face`` (``../shared/weights/teachers/silent-face``)."""
    env = os.environ.get("TLA_EDGE_TEACHER_DIR")
    return Path(env).expanduser() if env else data_dir("").parent / "weights" / "teachers" / "silent-face"


def commit() -> str | None:
    """The checkout's commit, with ``" + uncommitted changes"`` when tracked files differ; None without git.

    Read without git's optional locks: nothing in the checkout is written (``git status`` would refresh
    the index otherwise), so a script can run beside someone else's git commands.
    """
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True, env=env).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, env=env).stdout.strip()
    return sha + (" + uncommitted changes" if dirty else "")


def run_main(main, name: str, errors: tuple[type[BaseException], ...] = ()) -> int:
    """``main()``'s exit status; a user's mistake (``UserError``, or one of ``errors``) is one line on standard
    error and status 2.

    For ``if __name__ == "__main__": sys.exit(run_main(main, "NAME.py"))``: a script refusing an existing
    output or a wrong folder says so in one line, never with a traceback.
    """
    import sys

    from tla_edge.errors import UserError

    try:
        return main()
    except (UserError, *errors) as err:
        print(f"{name}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
