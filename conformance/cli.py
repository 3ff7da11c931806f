"""mailconform run | demo | serve | requirements | report."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from conformance import requirements
from conformance.report import ReportError, read_junit, summary_markdown, summary_text
from conformance.target import TargetError

if TYPE_CHECKING:
    import pytest

DEFAULT_REPORT = "mailconform-report.xml"
# From a regular (non-editable) install pytest marks the whole `conformance` distribution for assertion
# rewriting and warns that this very CLI already imported the package; the checks, imported later, are
# still rewritten, so the warning is noise a user cannot act on.
_ALREADY_IMPORTED = "ignore:Module already imported so cannot be rewritten; conformance:pytest.PytestAssertRewriteWarning"
PYTEST_OPTIONS = ("-p", "no:cacheprovider", "--tb=short", "-q", "-W", _ALREADY_IMPORTED)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        code = int(args.handler(args, extra))
        sys.stdout.flush()  # a reader that left is seen here, not at interpreter exit
        return code
    except (TargetError, ReportError) as exc:
        print(f"mailconform: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mailconform: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left (`mailconform requirements | head`): the Python docs' "Note on SIGPIPE" recipe,
        # so that the flush at exit raises nothing either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailconform", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the suite against a target file (extra args go to pytest)",
                              add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("-h", "--help", action=_RunHelp, nargs=0, help="show this help message and exit")
    run.add_argument("target", type=Path, nargs="+",
                     help="target files, or directories of them (README: Running it against your gateway); "
                          "then any pytest option, e.g. -n auto for a fleet")
    run.add_argument("--junitxml", type=Path, default=Path(DEFAULT_REPORT), help="default: %(default)s")
    run.add_argument("--profile", choices=requirements.PROFILES, default=requirements.DEFAULT_PROFILE,
                     help="requirement profile (default: %(default)s)")
    run.set_defaults(handler=_run)

    demo = commands.add_parser("demo", help="run the whole suite against the embedded reference gateway")
    demo.add_argument("--flaw", action="append", default=[], metavar="NAME", help="switch on a deliberate flaw")
    demo.add_argument("--junitxml", type=Path, default=Path(DEFAULT_REPORT))
    demo.add_argument("--profile", choices=requirements.PROFILES, default=requirements.DEFAULT_PROFILE)
    demo.set_defaults(handler=_demo)

    serve = commands.add_parser("serve", help="run the reference gateway on loopback in the foreground")
    serve.add_argument("--flaw", action="append", default=[], metavar="NAME")
    serve.add_argument("--write-target", type=Path, metavar="FILE", help="write the target file describing it")
    serve.add_argument("--list-flaws", action="store_true", help="list every flaw and what it breaks")
    serve.set_defaults(handler=_serve)

    reqs = commands.add_parser("requirements", help="print the requirement catalogue")
    reqs.add_argument("--format", choices=("table", "json"), default="table")
    reqs.add_argument("--profile", choices=requirements.PROFILES, default=None)
    reqs.set_defaults(handler=_requirements)

    report = commands.add_parser("report", help="summarize a JUnit XML file written by a run")
    report.add_argument("junitxml", type=Path)
    report.add_argument("--format", choices=("text", "markdown"), default="text")
    report.set_defaults(handler=_report)
    return parser


class _RunHelp(argparse.Action):
    """`run --help` also shows the pytest command line and the plugin's options. Built only when asked:
    a run must not import the plugin before pytest loads it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        from conformance import plugin

        parser.epilog = ("runs, in this process:\n  pytest " + shlex.join(
            ["--pyargs", "conformance.checks", "--mail-target", "TARGET", "--mail-profile", "PROFILE",
             "--junitxml", "JUNITXML", *PYTEST_OPTIONS]) + "\nthen prints the summary of the JUnit file.")
        group = parser.add_argument_group("passed to pytest as they are (with any other pytest option, e.g. -n 4)")
        plugin.pytest_addoption(cast("pytest.Parser", _PluginOptions(group)))
        parser.print_help()
        parser.exit()


_SET_BY_RUN = {"--mail-target", "--mail-profile"}


class _PluginOptions:
    """Stands in for pytest's option parser so that the plugin's own --mail-* definitions feed the help."""

    def __init__(self, group: argparse._ArgumentGroup) -> None:
        self.group = group

    def getgroup(self, name: str, description: str = "") -> _PluginOptions:
        return self

    def addoption(self, *names: str, **spec: Any) -> None:
        if not set(names) & _SET_BY_RUN:
            self.group.add_argument(*names, **spec)


def run_suite(target: Path | Sequence[Path], junitxml: Path, profile: str, extra: Sequence[str] = ()) -> int:
    """Run the checks in-process the way `pytest --pyargs conformance.checks` would, then summarize."""
    import pytest

    from conformance.fleet import load_targets

    targets = [target] if isinstance(target, Path) else list(target)
    load_targets(targets)  # one clear line for a bad file, before pytest starts
    args = ["--pyargs", "conformance.checks", *(a for t in targets for a in ("--mail-target", str(t))),
            "--mail-profile", profile, "--junitxml", str(junitxml), *PYTEST_OPTIONS, *extra]
    code = int(pytest.main(args))
    if junitxml.exists():
        print("\n" + summary_text(read_junit(junitxml)))
        print(f"\nJUnit XML: {junitxml}")
    return code


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    return run_suite(args.target, args.junitxml, args.profile, extra)


def _demo(args: argparse.Namespace, extra: list[str]) -> int:
    from conformance.reference.flaws import Flaws
    from conformance.reference.gateway import Gateway

    try:
        Flaws.parse(args.flaw)
    except ValueError as exc:
        print(f"mailconform: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mailconform-demo-") as workdir, \
            Gateway(args.flaw, workdir=Path(workdir)) as gateway:
        target = gateway.write_target(Path(workdir) / "target.toml")
        print(f"mailconform demo: reference gateway on loopback, flaws: {', '.join(args.flaw) or 'none'}")
        # The reference's lockout account is throw-away and its outages are internal and bounded.
        code = run_suite(target, args.junitxml, args.profile,
                         ["--mail-allow-lockout", "--mail-allow-disruption"])
        gateway.check_errors()
    print(f"mailconform demo: finished in {time.monotonic() - started:.1f} s, exit {code}")
    return code


def _serve(args: argparse.Namespace, extra: list[str]) -> int:
    from conformance.reference.flaws import Flaws, listing
    from conformance.reference.gateway import Gateway

    if args.list_flaws:
        print(listing())
        return 0
    try:
        Flaws.parse(args.flaw)
    except ValueError as exc:
        print(f"mailconform: {exc}", file=sys.stderr)
        return 2
    # SIGTERM (a service manager, `kill`) stops as cleanly as Ctrl-C: listeners closed, workdir removed.
    signal.signal(signal.SIGTERM, _interrupt)
    with Gateway(args.flaw) as gateway:
        if args.write_target:
            gateway.write_target(args.write_target)
            print(f"target file: {args.write_target}")
        for (node, service), port in sorted(gateway.ports.items()):
            print(f"{node:<8} {service:<12} 127.0.0.1:{port}")
        print("serving; Ctrl-C to stop", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _requirements(args: argparse.Namespace, extra: list[str]) -> int:
    if args.format == "json":
        print(requirements.as_json(args.profile))
    else:
        print(requirements.as_table(args.profile, shutil.get_terminal_size().columns))
    return 0


def _report(args: argparse.Namespace, extra: list[str]) -> int:
    results = read_junit(args.junitxml)
    print(summary_markdown(results) if args.format == "markdown" else summary_text(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
