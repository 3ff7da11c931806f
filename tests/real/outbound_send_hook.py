"""The outbound family's ``[outbound] send`` hook for the rig's real Postfix sender, as an operator writes one
(argv, no shell): hand the suite's message to that instance's own sendmail.

    python tests/real/outbound_send_hook.py CONFIG_DIR ENVELOPE_SENDER RECIPIENT MESSAGE_FILE

The suite appends RECIPIENT and MESSAGE_FILE. Exit 0 means Postfix queued the message; otherwise sendmail's
own words are printed. Standard library only: the suite runs it as a subprocess.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

TIMEOUT = 30.0


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print("usage: outbound_send_hook.py CONFIG_DIR ENVELOPE_SENDER RECIPIENT MESSAGE_FILE")
        return 2
    config_dir, sender, recipient, message = argv[1:]
    sendmail = shutil.which("sendmail", path="/usr/sbin:/usr/bin:/sbin:/bin") or "sendmail"
    with open(message, "rb") as source:
        result = subprocess.run([sendmail, "-C", config_dir, "-i", "-f", sender, "--", recipient], stdin=source,
                                capture_output=True, timeout=TIMEOUT, check=False)
    words = (result.stdout + result.stderr).decode(errors="replace").strip()
    print(words or f"queued by the Postfix instance in {config_dir}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
