from __future__ import annotations

from pathlib import Path

import pytest

from conformance.target import Service, TargetError, load_target
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
    ('[target]\nname = \n', r"not valid TOML: .*line 2"),
    ('[target]\nname="x"\n', r"key 'node': missing"),
])
def test_bad_input_is_one_clear_line(tmp_path: Path, body: str, expected: str) -> None:
    with pytest.raises(TargetError, match=expected) as info:
        load_target(write(tmp_path, body))
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="cannot read target file"):
        load_target(tmp_path / "absent.toml")
