"""One writer per run directory: an advisory lock held for the life of the training process.

``hold(run_dir)`` takes an exclusive ``flock`` on ``run_dir/.lock`` without waiting and writes the
holder's pid, host and start time into it. The kernel drops the lock when the process ends in any way
(SIGKILL and crashes included), so a lock left by a dead process never blocks a relaunch; what the file
still says then is only history. On a cluster file system flock is as good as its client: Linux's NFS
client maps it to POSIX byte-range locks, which the server enforces across hosts; Lustre and GPFS
support it when mounted with flock (-o flock). A second process on the same directory gets
``RunDirLocked``, which names the first.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import socket
from pathlib import Path

from av_td3.rundir import LOCK


class RunDirLocked(RuntimeError):
    pass


def hold(run_dir: Path):
    """Lock ``run_dir`` for this process; returns the open lock file (keep a reference: the lock lives
    as long as it stays open)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    f = (run_dir / LOCK).open("a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise RunDirLocked(f"{run_dir} is in use by {holder}: two runs must not write one run directory. "
                           "Wait for it to end, or stop it (SIGTERM checkpoints it), then relaunch") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()} since {dt.datetime.now().isoformat(timespec='seconds')}")
    f.flush()
    return f
