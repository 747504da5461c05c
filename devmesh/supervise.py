"""Start, watch and stop refmesh processes (gateways, agents) for the demo, drills and tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from kafkaedge.waiting import ProcessError, wait_until  # noqa: F401  (re-exported for dev code)


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL it when the process that started it
    dies, so a test run or demo that is killed leaves no gateway or agent behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: children then outlive a killed parent


class Proc:
    """One child process running a refmesh module, its output in a log file."""

    def __init__(self, name: str, module: str, args: list[str], env: dict, log_dir: Path,
                 wrapper: list[str] | None = None) -> None:
        self.name, self.module, self.args = name, module, args
        self.wrapper = list(wrapper or ())  # a command that execs the process (e.g. setpriv)
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = Path(log_dir) / f"{name.replace('/', '_')}.log"
        self.popen: subprocess.Popen | None = None
        self.log_start = 0  # where this run's output begins in the (appended) log file

    def start(self) -> "Proc":
        log = open(self.log_path, "ab")
        self.log_start = log.tell()
        root = str(Path(__file__).resolve().parent.parent)
        self.env["PYTHONPATH"] = root + os.pathsep + self.env.get("PYTHONPATH", "")
        self.popen = subprocess.Popen([*self.wrapper, sys.executable, "-m", self.module,
                                       *self.args],
                                      stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                      cwd=root, start_new_session=True,
                                      preexec_fn=_die_with_parent)
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check_alive(self) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            raise ProcessError(f"{self.name} exited with code {self.popen.returncode} "
                               f"(log: {self.log_path}):\n{self.first_error()}{self.tail()}")

    def first_error(self) -> str:
        """This run's first ERROR line with "..." after it, when the tail may not show it (a
        worker that fails at start logs a long traceback, then its shutdown)."""
        for line in self.log_text().splitlines():
            if "[ERROR]" in line or line.startswith("Traceback"):
                return line + "\n...\n"
        return ""

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_text(self) -> str:
        """The output of this run: a restarted process appends to the same log file, and a
        line of the previous run (such as "joined its group") must not count for this one."""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as log:
            log.seek(self.log_start)
            return log.read().decode(errors="replace")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; return the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL the process (fault drills: no chance to clean up)."""
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)
