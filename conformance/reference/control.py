"""The gateway's loopback control channel, and the command the target's per-node hooks run.

    python -m conformance.reference.control --port P --token-file F down|up NODE [COMPONENT]
    python -m conformance.reference.control --port P --token-file F tlsrpt   (send the TLS-RPT reports now)

One line per connection: ``TOKEN ACTION NODE COMPONENT``; the answer is ``OK`` or ``ERR reason``.
The token (a file readable by its owner only) keeps other local users from taking nodes down.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import socket
import sys
from collections.abc import Callable
from pathlib import Path

Apply = Callable[[str, str, bool], None]   # (node, component, down); raises ValueError on a bad name
Report = Callable[[], None]                 # starts sending the TLS-RPT reports
MAX_REQUEST = 1024


async def serve_control(apply: Apply, token: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        timeout: float = 10.0, report: Report | None = None) -> None:
    """asyncio.start_server callback: one request, one answer."""
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line[:MAX_REQUEST].decode("utf-8", "replace").split()
        if len(parts) != 4 or not hmac.compare_digest(parts[0].encode(), token.encode()):
            answer = "ERR bad request or token"
        elif parts[1] == "tlsrpt" and report is not None:
            report()
            answer = "OK"
        elif parts[1] not in ("down", "up"):
            answer = f"ERR unknown action {parts[1]!r} (expected down, up or tlsrpt)"
        else:
            try:
                apply(parts[2], parts[3], parts[1] == "down")
                answer = "OK"
            except ValueError as exc:
                answer = f"ERR {exc}"
        writer.write(answer.encode() + b"\n")
        await writer.drain()
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        pass  # the hook went away: nothing to answer
    finally:
        writer.close()


def request(port: int, token: str, action: str, node: str, component: str = "node", timeout: float = 10.0) -> str:
    """Send one control request; returns the gateway's answer line. Raises OSError if unreachable."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"{token} {action} {node} {component}\n".encode())
        data = b""
        while not data.endswith(b"\n") and len(data) < MAX_REQUEST:
            chunk = sock.recv(MAX_REQUEST)
            if not chunk:
                break
            data += chunk
    return data.decode("utf-8", "replace").strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.reference.control",
                                     description="take a reference gateway node (or one of its backends) down or up")
    parser.add_argument("--port", type=int, required=True, help="the gateway's control port")
    parser.add_argument("--token-file", type=Path, required=True, help="file holding the control token")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("action", choices=("down", "up", "tlsrpt"))
    parser.add_argument("node", nargs="?", default="-", help="the node (down, up)")
    parser.add_argument("component", nargs="?", default="node",
                        help="node (default), delivery, auth, directory or stall")
    args = parser.parse_args(argv)
    try:
        token = args.token_file.read_text(encoding="utf-8").strip()
        answer = request(args.port, token, args.action, args.node, args.component, args.timeout)
    except OSError as exc:
        print(f"control: cannot reach the gateway on 127.0.0.1:{args.port} "
              f"(or read {args.token_file}): {exc}", file=sys.stderr)
        return 2
    if answer != "OK":
        print(f"control: {answer or 'no answer'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
