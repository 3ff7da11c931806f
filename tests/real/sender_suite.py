"""The shipped outbound family against the rig's real Postfix senders: one target file per sender, each with
its own ``[outbound]`` lab (its own test domain and loopback addresses), all run side by side.

No pytest here. Every sender's lab is the suite's own (``conformance.probes.outbound``): the suite starts its
DNS and MX hosts during its run; the rig only prepares what an operator prepares before one — the lab's keys
(``lab_dir``: the zone's DS for the resolver, the lab CA), the gateway's resolver pointed at the lab zone (a
stub zone in the stack's Unbound, validated from that DS), and a ``send`` hook: the instance's own sendmail.
The MX hosts listen on port 25 of their own loopback addresses (127.0.54.0/24, nothing else uses them):
Postfix delivers to an MX host on port 25 only, and the suite publishes its TLSA records at ``_25._tcp``
(``_<mx_port>._tcp``, RFC 6698 §3).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from conformance.probes.outbound.pki import ANCHOR, CA_CERT, LabPki
from tests.real.sender_rig import SENDER_DOMAIN, SenderConfig, SenderStack, Stub
from tests.real.unbound import free_udp_tcp_port

RESOLVER = "127.0.55.1"             # the senders' Unbound (port 53), outside every lab's addresses
LAB_NETWORK = "127.0.54.0"
LAB_STRIDE = 32                     # each lab: its DNS on .1 of its block, MX hosts on the next addresses
ACCOUNT = f"alice@{SENDER_DOMAIN}"
# The send hook, as an operator writes one: the suite appends the recipient and the message file, sendmail
# reads the message from stdin. sh, not Python: the suite starts every scenario's hook at once.
SEND = 'exec /usr/sbin/sendmail -C "$0" -i -f "$1" -- "$2" < "$3"'
WINDOW = 15                         # seconds: one retry of the tempfail scenario (FAST_RETRY: ~3 s), with room for a loaded machine


@dataclass(frozen=True)
class SenderLab:
    """One sender's lab as its target file names it."""

    config: SenderConfig
    domain: str
    address: str
    dns_port: int
    lab_dir: Path

    @property
    def trust_anchor(self) -> str:
        return (self.lab_dir / ANCHOR).read_text(encoding="ascii")

    def stub(self) -> Stub:
        return Stub(self.address, self.dns_port, self.trust_anchor)


def plan_labs(workdir: Path, configs: Sequence[SenderConfig]) -> dict[str, SenderLab]:
    """A lab per sender, its keys made now (as an operator makes them before configuring the resolver)."""
    labs = {}
    for index, config in enumerate(configs):
        address = str(ipaddress.IPv4Address(LAB_NETWORK) + index * LAB_STRIDE + 1)
        domain = f"{config.name}.lab.test"
        lab_dir = workdir / f"lab-{config.name}"
        LabPki.load_or_create(lab_dir, domain)
        labs[config.name] = SenderLab(config, domain, address, free_udp_tcp_port(address), lab_dir)
    return labs


def lab_cas(workdir: Path, labs: dict[str, SenderLab]) -> Path:
    """Every lab's CA in one file: the senders' smtp_tls_CAfile and the policy daemon's SSL_CERT_FILE."""
    path = workdir / "lab-cas.pem"
    path.write_bytes(b"".join((lab.lab_dir / CA_CERT).read_bytes() for lab in labs.values()))
    return path


def sender_stack(workdir: Path, configs: Sequence[SenderConfig], labs: dict[str, SenderLab]) -> SenderStack:
    return SenderStack(workdir, configs, resolver=RESOLVER, mx_port=25, ca_file=lab_cas(workdir, labs),
                       stubs={lab.domain: lab.stub() for lab in labs.values()}, fast_retry=True)


def write_target(stack: SenderStack, lab: SenderLab, path: Path) -> Path:
    """The target file a vendor's CI would write for this sender: the outbound family only needs the test
    account (sent as) and the [outbound] section; the one node is a placeholder no selected check connects to."""
    password = path.parent / f"{lab.config.name}.pw"
    password.write_text("unused: the send hook submits without logging in\n")
    password.chmod(0o600)
    config_dir = stack.senders[lab.config.name].config_dir
    send = ", ".join(json.dumps(arg) for arg in ("/bin/sh", "-c", SEND, str(config_dir), ACCOUNT))
    path.write_text(f'''# Written by tests/real/sender_suite.py for the real Postfix sender "{lab.config.name}".
[target]
name = "real-sender-{lab.config.name}"
timeout = 5
resolver = "{RESOLVER}:53"

[[node]]
name = "sender"
host = "{SENDER_DOMAIN}"
address = "127.0.0.1"
services = {{ submission = 9 }}

[accounts.test]
username = "{ACCOUNT}"
password_file = "{password}"

[outbound]
domain = "{lab.domain}"
address = "{lab.address}"
dns_port = {lab.dns_port}
mx_port = 25
lab_dir = "{lab.lab_dir}"
send = [{send}]

[policy]
outbound_window = {WINDOW}
''')
    return path
