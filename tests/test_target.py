from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from conformance.target import Service, TargetError, Waiver, load_target
from tests.conftest import SECRET

pytestmark = pytest.mark.unit


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.toml"
    path.write_text(text)
    return path


def test_example_target_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAILCONFORM_TEST_PASSWORD", "pw1")
    monkeypatch.setenv("MAILCONFORM_LOCKOUT_PASSWORD", "pw2")
    source = Path(__file__).parent.parent / "fixtures" / "targets" / "two-node-staging.toml"
    copy = tmp_path / "staging.toml"
    copy.write_text(source.read_text())
    (tmp_path / "staging-ca.pem").write_text("placeholder")
    target = load_target(copy)
    assert [n.name for n in target.nodes] == ["mx1", "mx2"]
    assert len(target.endpoints_for(Service.MX)) == 2
    assert target.nodes[0].hooks is not None and target.nodes[0].hooks.up[-1] == "postfix@mx1"
    assert target.account("lockout").password.reveal() == "pw2"
    assert target.policy.lockout_threshold == 10


def test_password_never_in_repr(minimal_target: Path) -> None:
    target = load_target(minimal_target)
    assert target.account("test").password.reveal() == SECRET
    assert SECRET not in repr(target) and SECRET not in str(target.accounts)


def test_endpoint_id_is_stable_and_readable(minimal_target: Path) -> None:
    target = load_target(minimal_target)
    assert [e.id for e in target.endpoints] == ["mx@node1", "submission@node1"]


@pytest.mark.parametrize("body, expected", [
    ('[[node]]\nname="a"\nhost="h"\nservices={mx=70000}\n', r"t.toml:4: key 'node.services.mx': port out of range"),
    ('[[node]]\nname="a"\nhost="h"\nservices={smtp=25}\n', r"key 'node.services.smtp': unknown service"),
    ('[target]\ntimeout="fast"\n[[node]]\nhost="h"\nservices={mx=25}\n', r"t.toml:2: key 'target.timeout': expected"),
    ('[target]\nnmae="x"\n[[node]]\nhost="h"\nservices={mx=25}\n', r"t.toml:2: key 'target.nmae': unknown key"),
    ('[[node]]\nhost="h"\nservices={mx=25}\n[accounts.test]\nusername="a@b"\npassword_env="NOPE_NOT_SET"\n',
     r"t.toml:6: key 'accounts.test.password_env': environment variable NOPE_NOT_SET is not set"),
    ('[[node]]\nhost="h"\nservices={mx=25}\n[accounts.test]\nusername="a@b"\npassword="x"\n',
     r"unknown key"),
    ('[target]\nname = \n', r"^\S*t.toml:2: not valid TOML: Invalid value \(column 8\)$"),
    ('[target]\nname = "x"\n[[node]]\nhost="h"\nservices={mx=25\n', r"^\S*t.toml:5: not valid TOML: "),
    ('[[node]]\nname="a"\nhost="h"\nservices={mx="25"}\n',
     r"t.toml:4: key 'node.services.mx': port must be a number, got str '25'$"),
    ('[[node]]\nname="a"\nhost="h"\nservices={mx=true}\n', r"key 'node.services.mx': port must be a number"),
    ('[target]\nname="x"\n', r"key 'node': missing"),
    ('[target]\nmta_sts_address="mta-sts.example.test"\n[[node]]\nhost="h"\nservices={mx=25}\n',
     r"t.toml:2: key 'target.mta_sts_address': expected \"address:port\""),
])
def test_bad_input_is_one_clear_line(tmp_path: Path, body: str, expected: str) -> None:
    with pytest.raises(TargetError, match=expected) as info:
        load_target(write(tmp_path, body))
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="cannot read target file"):
        load_target(tmp_path / "absent.toml")


# --- failover family: per-component outage hooks (issue 8) ---

_OUTAGE_NODE = '[[node]]\nname="a"\nhost="h"\nservices={mx=25}\n'


def test_outage_hooks_per_component(tmp_path: Path) -> None:
    body = _OUTAGE_NODE + (
        'hooks = { down = ["stop"], up = ["start"], timeout = 30 }\n'
        '[node.outages.delivery]\ndown = ["stop-lmtp"]\nup = ["start-lmtp"]\n'
        '[node.outages.auth]\ndown = ["stop-auth"]\nup = ["start-auth"]\ntimeout = 5\n')
    node = load_target(write(tmp_path, body)).nodes[0]
    assert node.outage_hook("node") == node.hooks
    delivery = node.outage_hook("delivery")
    assert delivery is not None and delivery.down == ("stop-lmtp",) and delivery.timeout == 30.0
    auth = node.outage_hook("auth")
    assert auth is not None and auth.timeout == 5.0
    assert node.outage_hook("directory") is None
    hash(node)  # frozen and hashable, like every other target value


def test_outage_hooks_inline_table_and_no_hooks(tmp_path: Path) -> None:
    body = _OUTAGE_NODE + 'outages = { stall = { down = ["s"], up = ["u"] } }\n'
    node = load_target(write(tmp_path, body)).nodes[0]
    assert node.hooks is None and node.outage_hook("node") is None
    stall = node.outage_hook("stall")
    assert stall is not None and stall.timeout == 60.0


@pytest.mark.parametrize("extra, expected", [
    ('[node.outages.power]\ndown=["x"]\nup=["y"]\n', r"t.toml:5: key 'node.outages.power': unknown outage kind"),
    ('[node.outages.auth]\ndown=["x"]\n', r"t.toml:5: key 'node.outages.auth.up': missing"),
    ('[node.outages.auth]\ndown="stop"\nup=["y"]\n', r"t.toml:6: key 'node.outages.auth.down': expected a command"),
    ('[node.outages.auth]\ndown=["x"]\nup=["y"]\ntimeout=0\n', r"t.toml:8: key 'node.outages.auth.timeout': expected a positive"),
    ('[node.outages.auth]\ndown=["x"]\nup=["y"]\nshell=true\n', r"key 'node.outages.auth.shell': unknown key"),
    ('hooks={down=["x"],up=["y"]}\n[node.outages.node]\ndown=["x"]\nup=["y"]\n',
     r"key 'node.outages.node': the whole-node outage is already given by node.hooks"),
])
def test_bad_outage_hooks_are_one_clear_line(tmp_path: Path, extra: str, expected: str) -> None:
    with pytest.raises(TargetError, match=expected) as info:
        load_target(write(tmp_path, _OUTAGE_NODE + extra))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("endpoints", "nodes", "covered"), [
    ((), (), {"submission@mx1", "mx@mx2", "fleet"}),
    (("submission@*",), (), {"submission@mx1"}),
    ((), ("mx2",), {"mx@mx2"}),
    (("fleet",), (), {"fleet"}),
])
def test_a_waiver_covers_the_endpoints_and_nodes_its_globs_name(
        endpoints: tuple[str, ...], nodes: tuple[str, ...], covered: set[str]) -> None:
    waiver = Waiver("STARTTLS-AUTH-01", "r", "a", date(2030, 1, 1), endpoints, nodes)
    checks = {"submission@mx1": "mx1", "mx@mx2": "mx2", "fleet": None}
    assert {e for e, node in checks.items() if waiver.covers("STARTTLS-AUTH-01", e, node)} == covered
    assert not waiver.covers("STARTTLS-OFFER-01", "submission@mx1", "mx1")
    assert not waiver.expired(date(2030, 1, 1)) and waiver.expired(date(2030, 1, 2))


TARGET = """[target]
name = "t"
[[node]]
host = "h"
services = { mx = 25 }
[[waiver]]
requirement = "FAIL-REDUNDANT-01"
reason = "one node in staging"
approved_by = "ops"
expires = 2030-01-01
"""


@pytest.mark.parametrize(("extra", "error"), [
    ('[[waiver]]\nrequirement = "NOPE-01"\nreason = "r"\napproved_by = "a"\nexpires = 2030-01-01\n',
     ":12: key 'waiver.requirement': unknown requirement 'NOPE-01' (see `mailconform requirements`)"),
    ('[[waiver]]\nrequirement = "TLS-VER-01"\nreason = "r"\napproved_by = "a"\nexpires = "soon"\n',
     ":15: key 'waiver.expires': expected a date such as 2027-06-30, got 'soon'"),
    ('[[waiver]]\nrequirement = "TLS-VER-01"\nexpires = 2030-01-01\nreason = "r"\n',
     ":11: key 'waiver.approved_by': missing (expected a non-empty string)"),
    ('[[waiver]]\nrequirement = "TLS-VER-01"\nnode = ["mx1"]\n',
     (":13: key 'waiver.node': unknown key (expected one of: approved_by, endpoints, expires, nodes, "
     "reason, requirement)")),
])
def test_a_bad_waiver_is_a_target_error_naming_file_line_and_key(tmp_path: Path, extra: str, error: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(TARGET + extra)
    with pytest.raises(TargetError) as raised:
        load_target(path)
    assert str(raised.value) == f"{path}{error}"


def test_waivers_load_from_the_target(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(TARGET)
    (waiver,) = load_target(path).waivers
    assert waiver == Waiver("FAIL-REDUNDANT-01", "one node in staging", "ops", date(2030, 1, 1))


def test_mta_sts_address_keeps_ipv6_and_port(tmp_path: Path) -> None:
    target = load_target(write(tmp_path, '[target]\nmta_sts_address="[::1]:8443"\n[[node]]\nhost="h"\nservices={mx=25}\n'))
    assert target.mta_sts_address == ("::1", 8443)


TOKEN = "ya29.mailconform-Bearer-Token"
NODE = '[[node]]\nhost="mx1.example.test"\nservices={pop3=110, pop3s=995, imaps=993}\n'


def test_pop3_services_and_a_token_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MC_TOKEN", TOKEN)
    (tmp_path / "pw").write_text("pw\n")
    target = load_target(write(tmp_path, NODE + '[accounts.test]\nusername="a@b.test"\npassword_file="pw"\n'
                                               'token_env="MC_TOKEN"\n[accounts.oauth]\nusername="c@b.test"\n'
                                               'token_file="pw"\n[policy]\nbasic_auth="forbidden"\n'))
    pop3, pop3s = target.endpoints_for(Service.POP3)[0], target.endpoints_for(Service.POP3S)[0]
    assert (pop3.protocol, pop3.implicit_tls, pop3s.implicit_tls) == ("pop3", False, True)
    test, oauth = target.account("test"), target.account("oauth")
    assert test.token is not None and test.token.reveal() == TOKEN and TOKEN not in repr(target)
    assert oauth.password.reveal() == "" and oauth.token is not None  # a token-only account
    assert TOKEN in target.secrets() and target.policy.basic_auth == "forbidden"


def test_token_forms_are_scrubbed_from_transcripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    from conformance.probes.wire.config import ProbeConfig

    monkeypatch.setenv("MC_TOKEN", TOKEN)
    target = load_target(write(tmp_path, NODE + '[accounts.test]\nusername="a@b.test"\ntoken_env="MC_TOKEN"\n'))
    transcript = ProbeConfig.from_target(target).transcript(target.endpoints[0])
    xoauth2 = base64.b64encode(f"user=a@b.test\x01auth=Bearer {TOKEN}\x01\x01".encode()).decode()
    transcript.server(f"-ERR you sent {TOKEN} as {xoauth2}")
    assert TOKEN not in str(transcript) and xoauth2 not in str(transcript)


@pytest.mark.parametrize("account, expected", [
    ('token="inline"\n', "key 'accounts.test.token': unknown key"),
    ('token_env="MC_TOKEN"\ntoken_file="x"\n', "give token_env or token_file, not both"),
    ("", "missing password_env or password_file (or token_env / token_file)"),
])
def test_bad_token_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, account: str, expected: str) -> None:
    monkeypatch.setenv("MC_TOKEN", TOKEN)
    with pytest.raises(TargetError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_target(write(tmp_path, NODE + '[accounts.test]\nusername="a@b.test"\n' + account))


def test_basic_auth_policy_takes_only_its_two_words(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="key 'policy.basic_auth': expected one of allowed, forbidden"):
        load_target(write(tmp_path, NODE + '[policy]\nbasic_auth="off"\n'))
