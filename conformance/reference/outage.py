"""Per-node component state: which backend of which node is out."""

from __future__ import annotations

import threading
from enum import StrEnum


class Component(StrEnum):
    NODE = "node"            # the whole node: sessions get 421 / BYE, new ones are turned away
    DELIVERY = "delivery"    # the mail store cannot take messages
    AUTH = "auth"            # the password backend cannot answer
    DIRECTORY = "directory"  # the user directory cannot answer (is this recipient ours?)
    STALL = "stall"          # the delivery backend answers, but slowly


class Outages:
    """Which components are down, per node. Read on the server thread, written from any thread."""

    def __init__(self, nodes: tuple[str, ...]) -> None:
        self._lock = threading.Lock()
        self._nodes = nodes
        self._down: dict[str, set[Component]] = {n: set() for n in nodes}

    def check(self, node: str, component: str) -> Component:
        """Validate a node and component name; raises ValueError naming the valid ones."""
        if node not in self._down:
            raise ValueError(f"unknown node {node!r} (nodes: {', '.join(self._nodes)})")
        try:
            return Component(component)
        except ValueError:
            raise ValueError(f"unknown component {component!r} "
                             f"(components: {', '.join(c.value for c in Component)})") from None

    def set(self, node: str, component: str, down: bool) -> bool:
        """Set a state; returns True if it changed."""
        comp = self.check(node, component)
        with self._lock:
            was = comp in self._down[node]
            (self._down[node].add if down else self._down[node].discard)(comp)
            return was != down

    def is_down(self, node: str, component: Component) -> bool:
        with self._lock:
            return component in self._down.get(node, set())

    def clear(self) -> None:
        with self._lock:
            for state in self._down.values():
                state.clear()
