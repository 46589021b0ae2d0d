"""Entry point of the ``cimlab`` command.

Each topic module in :data:`TOPICS` defines ``register(subparsers)``, which adds its
sub-commands and sets ``func`` on each parser. Handlers import heavy dependencies (torch, h5py,
matplotlib) inside the function, so ``cimlab --help`` and the bench commands stay fast and never
import torch.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from typing import NoReturn

from cimlab import __version__
from cimlab.errors import CimlabError

#: Modules under cimlab.cli that contribute sub-commands, in --help order.
TOPICS: tuple[str, ...] = (
    "bench",  # emulator serve, station check
    "campaign",  # characterize
    "pvcmd",  # program-verify
    "storecmd",  # runs, report, import
    "modelcmd",  # fit, model show/plot
    "chipvarcmd",  # fit-chips
    "validatecmd",  # validate
    "traincmd",  # train
    "simcmd",  # simulate
    "chipnet",  # demo, program-net, evaluate, bn-calibrate
    "mitigationcmd",  # reproduce
    "exportcmd",  # export
    "watchcmd",  # watch
    "modelexportcmd",  # model-export
)

#: Sub-commands that resume where they stopped when run again with the same arguments.
RESUMABLE: frozenset[str] = frozenset({"characterize", "program-net"})

#: Exit status after a closed output pipe (``cimlab runs FILE | head``): 128 + SIGPIPE, what
#: a shell reports for a process killed by SIGPIPE.
EXIT_BROKEN_PIPE = 141


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (the usage itself is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"cimlab: error: {self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cimlab",
        description=(
            "ReRAM compute-in-memory lab: drive a (real or emulated) bench, characterize a chip, "
            "fit device models, simulate networks and run mitigations."
        ),
        epilog="Run 'cimlab demo' for the whole loop on the emulated bench. "
        "'cimlab COMMAND --help' explains each command.",
    )
    parser.add_argument("--version", action="version", version=f"cimlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for topic in TOPICS:
        importlib.import_module(f"cimlab.cli.{topic}").register(sub)
    return parser


_EXIT_GUARD: list[bool] = []


def _quiet_interrupt_at_exit() -> None:
    """After a command's work (files closed, outputs off, chip state saved), the interpreter
    still spends ~0.5-1 s tearing torch & co. down; a Ctrl-C landing there raised
    KeyboardInterrupt inside that teardown ("Exception ignored in ...", exit status 0). From the
    first atexit callback on (registered after the command, so it runs first), a Ctrl-C prints
    one line and exits with 130 at once: nothing is left to lose."""
    import atexit
    import threading

    if _EXIT_GUARD or threading.current_thread() is not threading.main_thread():
        return
    _EXIT_GUARD.append(True)
    atexit.register(_install_exit_interrupt_handler)


def _install_exit_interrupt_handler() -> None:
    import os
    import signal

    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError, AttributeError):
            pass

    def _exit_now(_signum: int, _frame: object) -> None:
        os.write(2, b"cimlab: interrupted while exiting (the command had finished; its "
                 b"results are saved)\n")
        os._exit(130)

    try:
        signal.signal(signal.SIGINT, _exit_now)
    except (ValueError, OSError):  # pragma: no cover - not settable here
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)  # for the run log's first line
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return _run(args)
    finally:
        _quiet_interrupt_at_exit()


def _run(args: argparse.Namespace) -> int:
    try:
        if getattr(args, "json", False):  # stdout carries the one JSON object, nothing else
            import contextlib

            args._json_stdout = sys.stdout
            with contextlib.redirect_stdout(sys.stderr):
                result = args.func(args)
        else:
            result = args.func(args)
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
    except CimlabError as exc:
        print(f"cimlab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        msg = "cimlab: interrupted (outputs were switched off)"
        if args.command in RESUMABLE:
            msg += "; re-run the same command to resume where it stopped"
        print(msg, file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # the file system refused (read-only, full, no permission)
        print(f"cimlab: error: {os_error_line(exc)}", file=sys.stderr)
        return 1
    return int(result or 0)


#: What to do about a file-system error, by errno.
_OS_HINTS: dict[int, str] = {
    errno.EROFS: "the place is read-only: choose a writable one (--out)",
    errno.EACCES: "no permission: choose a place you may write (--out) or fix its permissions",
    errno.EPERM: "not permitted: choose another place (--out)",
    errno.ENOSPC: "the disk is full: free space and re-run (a campaign resumes where it "
                  "stopped)",
    errno.EDQUOT: "the disk quota is exhausted: free space and re-run",
    errno.EISDIR: "a directory where a file is expected: give a file name",
    errno.ENOTDIR: "a file where a directory is expected: give a directory",
    errno.ENOENT: "no such file or directory: check the path",
    errno.ENAMETOOLONG: "the file name is too long: choose a shorter one",
}


def os_error_line(exc: OSError) -> str:
    """One line for a file-system error: the path, the system's reason and what to do."""
    where = exc.filename if exc.filename is not None else "a file"
    reason = exc.strerror or str(exc) or type(exc).__name__
    hint = _OS_HINTS.get(exc.errno or -1)
    return f"{where}: {reason}" + (f"; {hint}" if hint else "")


def _silence_stdout() -> None:
    """The reader of stdout went away (``| head``): point stdout at /dev/null so Python's
    final flush at exit does not print a BrokenPipeError traceback (the recipe of the Python
    ``signal`` module documentation, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
