"""Imported only by multiprocessing's forkserver (`isolation.Workers` preloads it): the forkserver dies with the
runner that started it, even one killed with SIGKILL, and so do the workers it forked (`isolation._serve`)."""
from __future__ import annotations

import os

from .isolation import die_with_parent

if die_with_parent() and os.getppid() == 1:  # the runner died before the request reached the kernel
    os._exit(1)
