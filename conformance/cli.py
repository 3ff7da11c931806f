"""mailconform run | demo | serve | init | requirements | report."""

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
from conformance.report import Comparison, ReportError, Run, compare, read_run, summary_markdown, summary_text
from conformance.target import TargetError

if TYPE_CHECKING:
    import pytest

DEFAULT_REPORT = "mailconform-report.xml"
# From a regular (non-editable) install pytest marks the whole `conformance` distribution for assertion
# rewriting and warns that this very CLI already imported the package; the checks, imported later, are
# still rewritten, so the warning is noise a user cannot act on.
_ALREADY_IMPORTED = "ignore:Module already imported so cannot be rewritten; conformance:pytest.PytestAssertRewriteWarning"
PYTEST_OPTIONS = ("-p", "no:cacheprovider", "-q", "-W", _ALREADY_IMPORTED)
# Quiet by default: progress and the summary; the reasons are in the summary and the reports, and pytest's
# assertion introspection (object reprs) only with -v.
QUIET, VERBOSE = ("--tb=no", "-rN"), ("--tb=short",)
# Options pytest takes once: given twice with different values, pytest would silently keep the last.
SINGLE_VALUED = ("--mail-target", "--mail-profile", "--mail-fail-on", "--mail-timeout", "--mail-prefetch",
                 "--junitxml")
# Spellings of other tools or of older releases: each option has one name, the plugin's.
RENAMED = {"--profile": "--mail-profile", "--fail-on": "--mail-fail-on", "--timeout": "--mail-timeout",
           "--allow-lockout": "--mail-allow-lockout", "--allow-disruption": "--mail-allow-disruption"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and args.command not in ("run", "demo"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        code = int(args.handler(args, extra))
        sys.stdout.flush()  # a reader that left is seen here, not at interpreter exit
        return code
    except (TargetError, ReportError, UsageError) as exc:
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
                              add_help=False, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("-h", "--help", action=_RunHelp, nargs=0, help="show this help message and exit")
    run.add_argument("target", type=Path, nargs="+",
                     help="target files, or directories of them (README: Running it against your gateway); "
                          "then any pytest option, e.g. -n auto for a fleet")
    _run_options(run)
    run.set_defaults(handler=_run)

    demo = commands.add_parser("demo", help="run the whole suite against the embedded reference gateway "
                               "(extra args go to pytest)", allow_abbrev=False)
    demo.add_argument("--flaw", action="append", default=[], metavar="NAME", help="switch on a deliberate flaw")
    _run_options(demo)
    demo.set_defaults(handler=_demo)

    serve = commands.add_parser("serve", help="run the reference gateway on loopback in the foreground")
    serve.add_argument("--flaw", action="append", default=[], metavar="NAME")
    serve.add_argument("--write-target", type=Path, metavar="FILE", help="write the target file describing it")
    serve.add_argument("--list-flaws", action="store_true", help="list every flaw and what it breaks")
    serve.set_defaults(handler=_serve)

    init = commands.add_parser("init", help="write a commented example target file to start from")
    init.add_argument("file", type=Path, nargs="?", default=Path("target.toml"), help="default: %(default)s")
    init.set_defaults(handler=_init)

    reqs = commands.add_parser("requirements", help="print the requirement catalogue")
    reqs.add_argument("--format", choices=("table", "json"), default="table")
    reqs.add_argument("--mail-profile", dest="profile", choices=requirements.PROFILES, default=None)
    reqs.set_defaults(handler=_requirements)

    report = commands.add_parser("report", help="summarize a JUnit XML file written by a run")
    report.add_argument("junitxml", type=Path)
    report.add_argument("--format", choices=("text", "markdown"), default="text")
    _report_options(report)
    report.set_defaults(handler=_report)
    return parser


class _Once(argparse.Action):
    """An option given twice is an error, not the last one silently winning."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        if getattr(namespace, self.dest) != self.default:
            raise UsageError(f"{option_string} given twice: give it once")
        setattr(namespace, self.dest, values)


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--junitxml", type=Path, default=Path(DEFAULT_REPORT), action=_Once,
                        help="default: %(default)s")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="pytest's verbose output with tracebacks (default: progress and the summary)")
    _report_options(parser)


def _report_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--html", type=Path, metavar="FILE", action=_Once,
                        help="write the HTML report (one self-contained file)")
    parser.add_argument("--markdown", type=Path, metavar="FILE", action=_Once,
                        help="write the Markdown summary (also appended to $GITHUB_STEP_SUMMARY when set)")
    parser.add_argument("--baseline", type=Path, metavar="PREVIOUS_XML", action=_Once,
                        help="compare with the JUnit file of a previous run: new failures, fixed, endpoints")


class _RunHelp(argparse.Action):
    """`run --help` also shows the pytest command line and the plugin's options. Built only when asked:
    a run must not import the plugin before pytest loads it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        from conformance import plugin

        parser.epilog = ("runs, in this process:\n  pytest " + shlex.join(
            ["--pyargs", "conformance.checks", "--mail-target", "TARGET", "--junitxml", "JUNITXML",
             *PYTEST_OPTIONS, *QUIET]) + " [PYTEST OPTIONS]\n"
            "then prints the summary of the JUnit file and writes the reports asked for.")
        group = parser.add_argument_group("passed to pytest as they are (with any other pytest option, e.g. -n 4)")
        plugin.pytest_addoption(cast("pytest.Parser", _PluginOptions(group)))
        parser.print_help()
        parser.exit()


_SET_BY_RUN = {"--mail-target"}


class _PluginOptions:
    """Stands in for pytest's option parser so that the plugin's own --mail-* definitions feed the help."""

    def __init__(self, group: argparse._ArgumentGroup) -> None:
        self.group = group

    def getgroup(self, name: str, description: str = "") -> _PluginOptions:
        return self

    def addoption(self, *names: str, **spec: Any) -> None:
        if not set(names) & _SET_BY_RUN:
            self.group.add_argument(*names, **spec)


def run_suite(target: Path | Sequence[Path], args: argparse.Namespace, extra: Sequence[str] = ()) -> int:
    """Run the checks in-process the way `pytest --pyargs conformance.checks` would, then report."""
    import pytest

    from conformance.fleet import load_targets

    targets = [target] if isinstance(target, Path) else list(target)
    # the targets are TARGET...: a --mail-target among the pytest options is one too many
    _one_spelling(["--mail-target", str(targets[0]), "--junitxml", str(args.junitxml), *extra])
    load_targets(targets)  # one clear line for a bad file, before pytest starts
    if args.baseline:
        read_run(args.baseline)  # a bad previous file is said before the run, not after it
    detail = [*VERBOSE, *["-v"] * (args.verbose + 1)] if args.verbose else list(QUIET)  # one -v undoes -q
    code = int(pytest.main(["--pyargs", "conformance.checks", *(a for t in targets for a in ("--mail-target", str(t))),
                            "--junitxml", str(args.junitxml), *PYTEST_OPTIONS, *detail, *extra]))
    if args.junitxml.exists():
        _write_reports(args, args.junitxml)
        print(f"\nJUnit XML: {args.junitxml}")
    return code


def _one_spelling(extra: Sequence[str]) -> None:
    """Each option has one name, and a value given twice must agree: pytest would keep the last silently."""
    seen: dict[str, str] = {}
    for index, arg in enumerate(extra):
        name, _, value = arg.partition("=")
        if name in RENAMED:
            raise UsageError(f"{name} is spelled {RENAMED[name]} (the same for run, demo and pytest)")
        if name not in SINGLE_VALUED:
            continue
        value = value if "=" in arg else (extra[index + 1] if index + 1 < len(extra) else "")
        if seen.setdefault(name, value) != value:
            raise UsageError(f"{name} given twice with different values ({seen[name]!r}, {value!r}): give it once")


class UsageError(ValueError):
    """A command line that would run something else than the user asked for."""


def _write_reports(args: argparse.Namespace, junitxml: Path) -> None:
    run = read_run(junitxml)
    comparison = compare(read_run(args.baseline), run) if args.baseline else None
    print("\n" + summary_text(run.cases, comparison))
    _write_files(args, run, comparison)
    if os.environ.get("GITHUB_STEP_SUMMARY"):  # the job page of a GitHub Actions run
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as summary:
            summary.write(summary_markdown(run.cases, comparison, run))


def _write_files(args: argparse.Namespace, run: Run, comparison: Comparison | None) -> None:
    if args.markdown:
        args.markdown.write_text(summary_markdown(run.cases, comparison, run), encoding="utf-8")
        print(f"Markdown: {args.markdown}")
    if args.html:
        from conformance.report.html import render_html

        args.html.write_text(render_html(run, comparison), encoding="utf-8")
        print(f"HTML report: {args.html}")


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    return run_suite(args.target, args, extra)


def _demo(args: argparse.Namespace, extra: list[str]) -> int:
    from conformance.reference.flaws import Flaws
    from conformance.reference.gateway import Gateway

    try:
        Flaws.parse(args.flaw)
    except ValueError as exc:
        print(f"mailconform: {exc}", file=sys.stderr)
        return 2
    _one_spelling(extra)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mailconform-demo-") as workdir, \
            Gateway(args.flaw, workdir=Path(workdir)) as gateway:
        target = gateway.write_target(Path(workdir) / "target.toml", outbound=True)
        print(f"mailconform demo: reference gateway on loopback, flaws: {', '.join(args.flaw) or 'none'}")
        # The reference's lockout account is throw-away and its outages are internal and bounded.
        optins = [o for o in ("--mail-allow-lockout", "--mail-allow-disruption") if o not in extra]
        code = run_suite(target, args, [*optins, *extra])
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
            gateway.write_target(args.write_target, outbound=True)
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


def _init(args: argparse.Namespace, extra: list[str]) -> int:
    from conformance import target_file

    try:
        target_file.write(args.file, target_file.example(), replace=False)
    except FileExistsError:
        raise UsageError(f"{args.file}: exists already; give another file name") from None
    print(f"wrote {args.file}: a commented example; every key is in the README (Running it against your gateway)")
    return 0


def _requirements(args: argparse.Namespace, extra: list[str]) -> int:
    if args.format == "json":
        print(requirements.as_json(args.profile))
    else:
        print(requirements.as_table(args.profile, shutil.get_terminal_size().columns))
    return 0


def _report(args: argparse.Namespace, extra: list[str]) -> int:
    run = read_run(args.junitxml)
    comparison = compare(read_run(args.baseline), run) if args.baseline else None
    if args.format == "markdown":
        print(summary_markdown(run.cases, comparison, run), end="")
    else:
        print(summary_text(run.cases, comparison))
    _write_files(args, run, comparison)
    return 0


if __name__ == "__main__":
    sys.exit(main())
