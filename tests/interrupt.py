"""Children that take Ctrl-C however the test run was started.

A shell starts a background job (`python -m pytest &`) or a `nohup` run with SIGINT ignored, and an ignored
signal stays ignored across fork and exec: Python then installs no KeyboardInterrupt handler, and a SIGINT a
test sends to its child does nothing. These commands set the disposition in the child before anything else.
"""

from __future__ import annotations

import sys

SIGINT_RAISES = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)"


def python_script(script: str) -> list[str]:
    """argv for `python -c SCRIPT` whose SIGINT raises KeyboardInterrupt."""
    return [sys.executable, "-c", f"{SIGINT_RAISES}\n{script}"]


def python_module(module: str, *args: str) -> list[str]:
    """argv for `python -m MODULE ARGS...` whose SIGINT raises KeyboardInterrupt."""
    return [sys.executable, "-c", (f"{SIGINT_RAISES}; import runpy; runpy.run_module({module!r}, "
            "run_name='__main__', alter_sys=True)"), *args]
