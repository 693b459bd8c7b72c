"""Command-line clients written by others (Debian's kcat, awscli, docker-compose), as tests run them.

A tool is looked up in /usr/bin and /bin only, where Debian installs it: a developer's PATH may
hold another build first (pyenv's pip-installed AWS CLI 1.x, a Docker Desktop plugin), and the
point of these tests is the client CI installs. `make test` installs the packages
(scripts/apt-install), so a missing tool is a failure naming its package, never a skip.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence

DEBIAN_BIN = "/usr/bin:/bin"


class ToolMissing(RuntimeError):
    pass


def debian_tool(command: str, package: str) -> str:
    """The absolute path of `command` from the Debian package `package`."""
    path = shutil.which(command, path=DEBIAN_BIN)
    if path is None:
        raise ToolMissing(
            f"{command} is not installed in {DEBIAN_BIN}: `make test` installs it "
            f"(scripts/apt-install {package}); by hand: apt-get install {package}"
        )
    return path


def run_tool(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Runs a tool, its output captured as bytes; with `check`, a non-zero exit raises an
    AssertionError showing the command, its status and its stderr."""
    result = subprocess.run(
        list(args), env=None if env is None else dict(env), capture_output=True, timeout=timeout_s
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited with {result.returncode}:\n"
            f"{result.stderr.decode(errors='replace')[-4000:]}"
        )
    return result
