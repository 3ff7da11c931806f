"""Mailboxes shared by both nodes (one mail store behind the gateway), safe to use from any thread."""

from __future__ import annotations

import threading


class MailStore:
    """Delivered messages per local address; foreign recipients land in ``relayed`` (nothing leaves)."""

    def __init__(self, local_addresses: tuple[str, ...]) -> None:
        self._lock = threading.Lock()
        self._local = tuple(a.lower() for a in local_addresses)
        self._boxes: dict[str, list[bytes]] = {a: [] for a in self._local}
        self._relayed: list[tuple[str, bytes]] = []

    def is_local(self, address: str) -> bool:
        return address.lower() in self._boxes

    def deliver(self, recipients: list[str], message: bytes) -> None:
        with self._lock:
            for rcpt in recipients:
                box = self._boxes.get(rcpt.lower())
                if box is not None:
                    box.append(message)
                else:
                    self._relayed.append((rcpt, message))

    def messages(self, address: str) -> list[bytes]:
        with self._lock:
            return list(self._boxes.get(address.lower(), []))

    def relayed(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self._relayed)

    def clear(self) -> None:
        with self._lock:
            for box in self._boxes.values():
                box.clear()
            self._relayed.clear()
