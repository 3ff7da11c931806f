"""Switch on dnspython's DNSSEC support when the installed ``cryptography`` has what it uses.

dnspython 2.8+ gates ``dns.dnssec`` on its metadata check (``cryptography>=50`` for ``dnspython[dnssec]``),
while the ECDSA, RSA and EdDSA code it runs works with the ``cryptography`` this project already pins
(>=42); ``dns._features.force`` is dnspython's own switch for exactly this case. The package's
``__init__`` imports this module, so it runs before any of our modules imports ``dns.dnssec``.
"""

from __future__ import annotations

import importlib
import sys

import dns._features

if not dns._features.have("dnssec"):
    try:
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa  # noqa: F401 - the check itself
    except ImportError:  # pragma: no cover - cryptography is a hard dependency
        pass
    else:
        dns._features.force("dnssec", True)
        if "dns.dnssec" in sys.modules:  # imported by someone before us: bind its real functions now
            importlib.reload(sys.modules["dns.dnssec"])
