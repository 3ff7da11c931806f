"""What the gateway reported back about this run's messages: delivery status notifications (RFC 3464) in the
test account's mailbox, read once after the window.

A DSN is evidence beside what arrived at the lab: "Action: delayed; Status: 4.7.5" says why a message is
still queued. One read-only imapclient session over TLS (the certificate verified before LOGIN) finds the
DSNs naming this run's recipients (``mc-<tag>@``) and deletes nothing. No IMAP endpoint, or no login, is
said in words: the DSNs are then simply not evidence.
"""

from __future__ import annotations

import email
import ssl
from dataclasses import dataclass
from email.message import Message

import imapclient
import imapclient.exceptions

from conformance.probes.failover.delivery import verifying_context
from conformance.probes.wire.config import ProbeConfig, scrub
from conformance.target import Account, Endpoint

MAX_NOTICES = 50   # DSNs fetched per run at most: a few per scenario is all a gateway sends in one window


@dataclass(frozen=True)
class Dsn:
    """One per-recipient block of a DSN (RFC 3464 §2.3)."""

    recipient: str
    action: str          # failed, delayed, delivered, relayed, expanded
    status: str          # e.g. 4.7.5 (RFC 3463)
    diagnostic: str      # the Diagnostic-Code, "" when absent

    @property
    def says_delivered(self) -> bool:
        return self.action in ("delivered", "relayed", "expanded")

    def describe(self) -> str:
        words = f"Action: {self.action}; Status: {self.status}"
        return f"{words}; Diagnostic-Code: {self.diagnostic}" if self.diagnostic else words


@dataclass(frozen=True)
class DsnRead:
    """The DSNs of one run, or why the mailbox was not read (``reason``)."""

    mailbox: str
    notices: tuple[Dsn, ...] = ()
    reason: str = ""

    def about(self, recipient: str) -> tuple[Dsn, ...]:
        return tuple(n for n in self.notices if n.recipient == recipient.lower())


def parse_dsn(message: bytes) -> tuple[Dsn, ...]:
    """The per-recipient blocks of every message/delivery-status part; () for a message that is no DSN."""
    notices = []
    for part in email.message_from_bytes(message).walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        for block in blocks[1:] if isinstance(blocks, list) else ():   # the first block is per-message
            notice = _recipient_block(block) if isinstance(block, Message) else None
            if notice is not None:
                notices.append(notice)
    return tuple(notices)


def _recipient_block(block: Message) -> Dsn | None:
    recipient = block.get("Final-Recipient") or block.get("Original-Recipient")
    action = block.get("Action")
    if not recipient or not action:
        return None
    return Dsn(_address(str(recipient)), str(action).strip().lower(), str(block.get("Status", "")).strip(),
               " ".join(str(block.get("Diagnostic-Code", "")).split()))


def _address(field: str) -> str:
    """``rfc822; user@example`` -> ``user@example`` (RFC 3464 §2.3.2)."""
    return field.partition(";")[2].strip().strip("<>").lower() if ";" in field else field.strip().lower()


def read_dsns(endpoint: Endpoint, cfg: ProbeConfig, account: Account, tag: str) -> DsnRead:
    """The DSNs in the test account's INBOX that name a recipient of run ``tag``. Blocking (imapclient): run
    it in a thread from async code."""
    where = str(endpoint)
    client: imapclient.IMAPClient | None = None
    try:
        context = verifying_context(endpoint, cfg)
        client = imapclient.IMAPClient(endpoint.connect_host, port=endpoint.port, ssl=endpoint.implicit_tls,
                                       ssl_context=context, timeout=cfg.timeout)
        if not endpoint.implicit_tls:
            client.starttls(context)
        client.login(account.username, account.password.reveal())
        client.select_folder("INBOX", readonly=True)
        uids = client.search(["TEXT", f"mc-{tag}@"])[:MAX_NOTICES]
        messages = client.fetch(uids, ["BODY.PEEK[]"]).values() if uids else ()
        notices = [n for data in messages for n in parse_dsn(data.get(b"BODY[]") or b"")
                   if n.recipient.startswith(f"mc-{tag}@")]
        return DsnRead(where, tuple(notices))
    except imapclient.exceptions.LoginError as exc:
        return DsnRead(where, reason=scrub(f"the test account could not log in to {where}: {_words(exc)}",
                                           cfg.secrets))
    except ssl.SSLCertVerificationError as exc:
        return DsnRead(where, reason=f"not logging in to {where}: its certificate does not verify "
                                     f"({exc.verify_message})")
    except TimeoutError:
        return DsnRead(where, reason=f"{where} did not answer within {cfg.timeout:g} s")
    except OSError as exc:
        return DsnRead(where, reason=f"{where} could not be reached: {exc.strerror or exc}")
    except imapclient.exceptions.IMAPClientError as exc:
        return DsnRead(where, reason=scrub(f"{where} answered: {_words(exc)}", cfg.secrets))
    finally:
        if client is not None:
            _logout(client)


def _logout(client: imapclient.IMAPClient) -> None:
    try:
        client.logout()
    except (OSError, imapclient.exceptions.IMAPClientError):
        pass   # the DSNs are in hand; a failed LOGOUT changes none


def _words(exc: BaseException) -> str:
    text = str(exc)
    return text.removeprefix("b'").removesuffix("'") or "no reason given"
