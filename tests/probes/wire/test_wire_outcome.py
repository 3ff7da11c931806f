"""The one error boundary (``mapped_errors``): every low-level error becomes our own, with a reason in words."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

import pytest

from conformance.probes.wire.outcome import ProbeError, ProtocolViolation, Unreachable, mapped_errors

pytestmark = pytest.mark.unit


def _ssl_error(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower().replace('_', ' ')} (_ssl.c:1000)")
    error.reason = reason
    return error


def reason_of(error: BaseException) -> ProbeError:
    with pytest.raises(ProbeError) as caught, mapped_errors("reading the reply to DATA"):
        raise error
    return caught.value


@pytest.mark.parametrize(("error", "kind", "words"), [
    (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), Unreachable,
     "connection reset by the server while reading the reply to DATA"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), Unreachable, "connection refused by the server"),
    (BrokenPipeError(errno.EPIPE, "Broken pipe"), Unreachable, "the server closed the connection"),
    (asyncio.IncompleteReadError(b"", 10), Unreachable, "the server closed the connection while reading"),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), Unreachable,
     "cannot resolve the host name (Name or service not known)"),
    (OSError(errno.ENETUNREACH, "Network is unreachable"), Unreachable, "network error: network is unreachable"),
    (_ssl_error("SSLV3_ALERT_HANDSHAKE_FAILURE"), ProtocolViolation, "the server sent the TLS alert 'handshake failure'"),
    (_ssl_error("TLSV1_ALERT_PROTOCOL_VERSION"), ProtocolViolation, "the TLS alert 'protocol version'"),
    (_ssl_error("WRONG_VERSION_NUMBER"), ProtocolViolation, "not TLS (wrong version number)"),
    (_ssl_error("NO_SHARED_CIPHER"), ProtocolViolation, "TLS error while reading the reply to DATA: no shared cipher"),
    (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), ProtocolViolation,
     "closed the connection in the middle of TLS"),
])
def test_every_error_is_said_in_words(error: BaseException, kind: type[ProbeError], words: str) -> None:
    mapped = reason_of(error)
    assert isinstance(mapped, kind)
    assert words in str(mapped), str(mapped)
    assert type(error).__name__ not in str(mapped) and "_ssl.c" not in str(mapped) and "[SSL" not in str(mapped)
