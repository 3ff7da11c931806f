"""Outage probes against the reference gateway: the replies seen while a component is down, 421/BYE
versus a reset at shutdown, and the recovery wait. Outages are switched directly (gw.outage) here;
the hook path (control.py through probes.hooks) is covered by the end-to-end test at the bottom."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from conformance.probes.failover.hooks import outage
from conformance.probes.failover.outage import Ending, probe_shutdown, probe_transaction, wait_until_serving
from conformance.probes.wire.config import ProbeConfig
from conformance.probes.wire.outcome import Outcome
from conformance.reference.gateway import Gateway
from conformance.target import Account, Endpoint, Target, load_target

pytestmark = pytest.mark.reference

TOKEN = "mc-0000abcd-001"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with Gateway(workdir=tmp_path_factory.mktemp("gw")) as gw:
        yield gw
        gw.check_errors()


@pytest.fixture
def gw(gateway: Gateway) -> Iterator[Gateway]:
    gateway.set_flaws(())
    gateway.reset()
    yield gateway
    gateway.reset()


@pytest.fixture(scope="module")
def target(gateway: Gateway) -> Target:
    return load_target(gateway.write_target(gateway.workdir / "target.toml"))


@pytest.fixture(scope="module")
def cfg(target: Target) -> ProbeConfig:
    return ProbeConfig.from_target(target)


@pytest.fixture(scope="module")
def account(target: Target) -> Account:
    found = target.account("test")
    assert found is not None
    return found


def ep(target: Target, eid: str) -> Endpoint:
    return next(e for e in target.endpoints if e.id == eid)


@pytest.mark.parametrize("eid", ["mx@node1", "submission@node1", "submissions@node1"])
def test_transaction_completes_normally(gw: Gateway, target: Target, cfg: ProbeConfig, account: Account,
                                        eid: str) -> None:
    found = asyncio.run(probe_transaction(ep(target, eid), cfg, account, token=TOKEN))
    assert found.outcome is Outcome.COMPLETED, found.reason
    assert found.result is not None and found.result.completed and found.result.first_permanent() is None
    data = found.result.reply("DATA")
    assert data is not None and data.code == 250 and data.seconds < 2
    assert any(TOKEN.encode() in m for m in gw.mailbox(account.address))
    assert account.password.reveal() not in "\n".join(found.transcript)


@pytest.mark.parametrize("flaws, stage, code", [((), "DATA", 451), (("permfail_during_outage",), "DATA", 554)])
def test_delivery_outage_replies(gw: Gateway, target: Target, cfg: ProbeConfig, account: Account,
                                 flaws: tuple[str, ...], stage: str, code: int) -> None:
    gw.set_flaws(flaws)
    gw.outage("node1", "delivery", True)
    found = asyncio.run(probe_transaction(ep(target, "mx@node1"), cfg, account, token=TOKEN))
    assert found.result is not None and not found.result.completed
    reply = found.result.reply(stage)
    assert reply is not None and reply.code == code
    assert (found.result.first_permanent() is not None) == (code >= 500)
    other = asyncio.run(probe_transaction(ep(target, "mx@node2"), cfg, account, token=TOKEN))
    assert other.result is not None and other.result.completed  # only node1 is out


@pytest.mark.parametrize("flaws, code", [((), 451), (("directory_down_550",), 550)])
def test_directory_outage_rcpt(gw: Gateway, target: Target, cfg: ProbeConfig, account: Account,
                               flaws: tuple[str, ...], code: int) -> None:
    gw.set_flaws(flaws)
    gw.outage("node2", "directory", True)
    found = asyncio.run(probe_transaction(ep(target, "submission@node2"), cfg, account, token="", send_data=False))
    assert found.result is not None
    rcpt = found.result.reply("RCPT")
    assert rcpt is not None and rcpt.code == code and found.result.reply("DATA") is None


def test_slow_data_reply_is_measured_not_lost(gw: Gateway, target: Target, cfg: ProbeConfig,
                                              account: Account) -> None:
    gw.set_flaws(("slow_data_reply",))
    gw.outage("node1", "stall", True)
    quick = ProbeConfig.from_target(target, timeout=2)  # shorter than the 6 s stall
    found = asyncio.run(probe_transaction(ep(target, "mx@node1"), quick, account, token=TOKEN, data_timeout=10))
    assert found.result is not None
    data = found.result.reply("DATA")
    assert data is not None and data.code == 250 and data.seconds > 5


def test_no_reply_to_data_is_a_finding_not_a_failed_probe(gw: Gateway, target: Target, account: Account) -> None:
    """Silence after the body (a backend stalled past every timeout, as Postfix waiting on a frozen
    policy service does) is recorded as a DATA stage without a code; the session is closed, not QUIT."""
    gw.set_flaws(("slow_data_reply",))
    gw.outage("node1", "stall", True)
    quick = ProbeConfig.from_target(target, timeout=1)  # the 6 s stall outlasts even data_timeout
    found = asyncio.run(probe_transaction(ep(target, "mx@node1"), quick, account, token=TOKEN, data_timeout=2))
    assert found.outcome is Outcome.COMPLETED and found.result is not None, found.reason
    data = found.result.reply("DATA")
    assert data is not None and data.code is None and "no complete line within 2.0 s" in data.text
    assert not found.result.completed and 2 <= data.seconds < 4


@pytest.mark.parametrize("flaws, smtp_end, imap_end, pop3_end", [
    ((), Ending.REPLY_421, Ending.BYE, Ending.ERR),
    (("reset_on_shutdown",), Ending.RESET, Ending.RESET, Ending.RESET)])
def test_shutdown_endings(gw: Gateway, target: Target, cfg: ProbeConfig, account: Account,
                          flaws: tuple[str, ...], smtp_end: Ending, imap_end: Ending, pop3_end: Ending) -> None:
    gw.set_flaws(flaws)
    endpoints = [e for e in target.endpoints if e.node == "node1"]
    found = asyncio.run(probe_shutdown(endpoints, cfg, account, lambda: gw.outage("node1", "node", True), wait=3))
    assert set(found) == {e.id for e in endpoints}
    for eid, attempt in found.items():
        assert attempt.outcome is Outcome.COMPLETED, (eid, attempt.reason)
        assert attempt.result is not None
        expected = {"imap": imap_end, "pop3": pop3_end}.get(eid.split("@")[0].rstrip("s"), smtp_end)
        assert attempt.result.ending is expected, (eid, attempt.result)
        assert attempt.result.orderly is (expected is not Ending.RESET)
        assert "Error" not in attempt.result.detail, attempt.result.detail  # words, never an exception class
    assert found["mx@node1"].result is not None and "DATA" in found["mx@node1"].result.held


def test_shutdown_of_an_unreachable_endpoint_is_inconclusive(gw: Gateway, target: Target, cfg: ProbeConfig,
                                                             account: Account) -> None:
    gw.outage("node2", "node", True)  # already down: no session can be opened
    found = asyncio.run(probe_shutdown([ep(target, "mx@node2")], cfg, account, lambda: None, wait=1))
    assert found["mx@node2"].outcome is Outcome.INCONCLUSIVE


def test_wait_until_serving(gw: Gateway, target: Target, cfg: ProbeConfig) -> None:
    endpoints = [e for e in target.endpoints if e.node == "node1"]
    gw.outage("node1", "node", True)
    down = asyncio.run(wait_until_serving(endpoints[:1], cfg, 0.5))
    assert down == {endpoints[0].id: None}
    gw.outage("node1", "node", False)
    up = asyncio.run(wait_until_serving(endpoints, cfg, 5))
    assert all(s is not None and s < 5 for s in up.values())


def test_hooks_written_by_the_gateway_drive_its_components(gw: Gateway, target: Target, cfg: ProbeConfig,
                                                           account: Account) -> None:
    """End to end: the target's own per-component hooks (python -m conformance.reference.control)."""
    node = target.node("node1")
    with outage(node, "delivery", max_outage=10) as record:
        found = asyncio.run(probe_transaction(ep(target, "mx@node1"), cfg, account, token=TOKEN))
        assert found.result is not None and (reply := found.result.reply("DATA")) is not None and reply.code == 451
    assert [r.ok for r in record.runs] == [True, True]
    again = asyncio.run(probe_transaction(ep(target, "mx@node1"), cfg, account, token=TOKEN))
    assert again.result is not None and again.result.completed
