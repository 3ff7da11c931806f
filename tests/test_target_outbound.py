"""The target's [outbound] section: the outbound family's opt-in, read and checked like every other key."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.target import Service, TargetError, load_target

pytestmark = pytest.mark.unit

NODE = '[[node]]\nhost = "mx.example.test"\nservices = { submission = 587 }\n'


def _load(tmp_path: Path, outbound: str, policy: str = "") -> object:
    path = tmp_path / "t.toml"
    path.write_text(NODE + outbound + policy)
    return load_target(path)


def test_without_the_section_the_family_is_off(tmp_path: Path) -> None:
    target = _load(tmp_path, "")
    assert target.outbound is None and target.policy.outbound_window == 20   # type: ignore[attr-defined]


def test_the_section_with_its_defaults(tmp_path: Path) -> None:
    target = _load(tmp_path, '[outbound]\ndomain = "Outbound.Test."\naddress = "127.0.0.10"\nlab_dir = "lab"\n',
                   "[policy]\noutbound_window = 2\n")
    out = target.outbound  # type: ignore[attr-defined]
    assert (out.domain, out.address, out.dns_port, out.mx_port, out.send, out.via) == (
        "outbound.test", "127.0.0.10", 53, 25, None, Service.SUBMISSION)
    assert out.lab_dir == (tmp_path / "lab").resolve()
    assert target.policy.outbound_window == 2  # type: ignore[attr-defined]


def test_a_send_hook_and_ports(tmp_path: Path) -> None:
    target = _load(tmp_path, '[outbound]\ndomain = "outbound.test"\naddress = "10.9.0.1"\ndns_port = 5353\n'
                             'mx_port = 2525\nsend = ["/usr/local/bin/send-via-gw", "--now"]\nvia = "submissions"\n'
                             'tlsrpt_send = ["/usr/local/bin/gw-tlsrpt"]\n')
    out = target.outbound  # type: ignore[attr-defined]
    assert (out.dns_port, out.mx_port, out.send, out.via) == (5353, 2525, ("/usr/local/bin/send-via-gw", "--now"),
                                                              Service.SUBMISSIONS)
    assert out.tlsrpt_send == ("/usr/local/bin/gw-tlsrpt",)


@pytest.mark.parametrize(("body", "message"), [
    ('address = "127.0.0.10"\n', "key 'outbound.domain': missing"),
    ('domain = "not a domain"\naddress = "127.0.0.10"\n', "key 'outbound.domain': expected a DNS domain name"),
    ('domain = "outbound.test"\naddress = "lab.example"\n', "key 'outbound.address': expected an IPv4 address"),
    ('domain = "outbound.test"\naddress = "127.0.0.10"\nmx_port = 0\n', "key 'outbound.mx_port': port out of range"),
    ('domain = "outbound.test"\naddress = "127.0.0.10"\nsend = []\n', "key 'outbound.send': expected a non-empty"),
    ('domain = "outbound.test"\naddress = "127.0.0.10"\nvia = "mx"\n', "key 'outbound.via': expected"),
    ('domain = "outbound.test"\naddress = "127.0.0.10"\ntlsrpt_send = [1]\n', "key 'outbound.tlsrpt_send': expected"),
    ('domain = "outbound.test"\naddress = "127.0.0.10"\nresolver = "x"\n', "key 'outbound.resolver': unknown key"),
])
def test_bad_values_name_file_line_and_key(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(TargetError) as error:
        _load(tmp_path, "[outbound]\n" + body)
    assert message in str(error.value) and f"{tmp_path / 't.toml'}:" in str(error.value)
