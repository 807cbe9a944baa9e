"""The ``openspec`` entry point: common command lines start without importing typer.

Importing typer costs about 100 ms here, five times what the interpreter needs to start; for
``openspec verify f`` or ``openspec cat f | ...`` in a loop that was most of the run. So the command
lines of ``copy``, ``cat`` and ``verify`` that use only their plain spellings are parsed here,
against a table generated from the Typer app (:mod:`openspec_cli.argspec`). Anything else (help,
a mistake, bundled short flags, ``-aVALUE``, an unknown command) goes to the Typer app, which
gives the same result and the same messages. ``tests/test_launch.py`` checks that for any command
line both parsers hand :mod:`openspec_cli.commands` the same arguments, or this one declines.
"""

from __future__ import annotations

import os
import sys

from openspec_cli import argspec

#: Set by a shell asking click for completions; typer must answer that.
COMPLETION_VARIABLE = "_OPENSPEC_COMPLETE"

Parsed = tuple[str, dict[str, object], bool]


def _value(kind: str, minimum: int | None, text: str) -> object | None:
    """``text`` converted as typer would, or None where typer would refuse it."""
    if kind == "text":
        return text
    if kind == "algo":
        from openspec_cli.algorithms import ALGORITHMS

        return text if text in ALGORITHMS else None
    try:
        number = int(text)
    except ValueError:
        return None
    return None if minimum is not None and number < minimum else number


def _parse_command(name: str, words: list[str]) -> dict[str, object] | None:
    """Keyword arguments for ``commands.<name>``, or None if typer must decide."""
    options = argspec.OPTIONS[name]
    values = dict(argspec.DEFAULTS[name])
    positional: list[str] = []
    rest = iter(words)
    for word in rest:
        if word == "--":
            positional.extend(rest)
            break
        if word == "-" or not word.startswith("-"):
            positional.append(word)
            continue
        flag, has_inline, inline = word.partition("=") if word.startswith("--") else (word, "", "")
        if flag not in options:
            return None
        dest, kind, minimum = options[flag]
        if kind == "flag":
            if has_inline:
                return None
            values[dest] = True
            continue
        text = inline if has_inline else next(rest, None)
        if text is None:
            return None
        value = _value(kind, minimum, text)
        if value is None:
            return None
        values[dest] = value
    dest, required = argspec.ARGUMENTS[name]
    if required and not positional:
        return None
    values[dest] = positional or values[dest]
    return values


def parse(argv: list[str]) -> Parsed | None:
    """(command, keyword arguments, --debug) as the Typer app would parse ``argv``, or None."""
    debug = False
    words = list(argv)
    while words and words[0] == "--debug":
        debug = True
        words.pop(0)
    if not words or words[0] not in argspec.OPTIONS:
        return None
    values = _parse_command(words[0], words[1:])
    return None if values is None else (words[0], values, debug)


#: What stands in for a closed fd 0, 1, 2: reading a closed stdin and writing a closed stdout
#: still fail with EBADF (the wrong direction), while messages to a closed stderr are dropped.
_STAND_INS = ((0, os.O_WRONLY), (1, os.O_RDONLY), (2, os.O_WRONLY))


def hold_standard_fds() -> None:
    """Give a closed fd 0, 1 or 2 (``2>&-`` from a script or cron) /dev/null.

    Otherwise the first file we open takes that number, and output meant for the stream lands in
    it. Python also leaves ``sys.stderr`` None then, and the first progress check of it failed
    with nothing printed: ``openspec cat f 2>&-`` wrote nothing and exited 1.
    """
    for fd, mode in _STAND_INS:
        try:
            os.fstat(fd)
        except OSError:
            held = os.open(os.devnull, mode)
            if held != fd:
                os.dup2(held, fd)
                os.close(held)
    if sys.stderr is None:
        # Lives as long as the process, as the sys.stderr Python would have made.
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115


def _print_version() -> None:
    """``--version``, and one line (exit 3, as every other command) when stdout is closed."""
    from openspec_cli import __version__

    try:
        if sys.stdout is None:  # closed at start (>&-): Python made no sys.stdout
            raise OSError(9, os.strerror(9))  # EBADF, without importing errno
        sys.stdout.write(f"openspec {__version__}\n")
        sys.stdout.flush()
    except BrokenPipeError:  # a reader that went away: a normal end, as for every command
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the interpreter's last flush is quiet
        raise SystemExit(141) from None
    except OSError as err:
        sys.stderr.write(f"openspec: error writing standard output: {err.strerror}\n")
        raise SystemExit(3) from None  # ExitCode.IO_ERROR, without importing errors


def main() -> None:
    """Console-script entry point: the fast path when it applies, else the Typer app."""
    hold_standard_fds()
    argv = sys.argv[1:]
    if argv in (["--version"], ["-V"]):
        _print_version()
        return
    try:
        _dispatch(argv)
    except KeyboardInterrupt:  # Ctrl-C while starting (imports, parsing): no traceback
        sys.stderr.write("openspec: interrupted\n")
        raise SystemExit(130) from None  # ExitCode.INTERRUPTED, without importing errors
    except BaseException as exc:
        # A second SIGTERM landing while a command reports the first (before it ignores more):
        # its Interrupted escapes the command's handler. One line and its status, still.
        errors = sys.modules.get("openspec_cli.errors")
        if errors is None or not isinstance(exc, errors.Interrupted):
            raise
        sys.stderr.write(f"openspec: {exc.message}\n")
        raise SystemExit(int(exc.exit_code)) from None


def _dispatch(argv: list[str]) -> None:
    """Run the command; once it runs, its own handler turns a Ctrl-C into its message."""
    parsed = None if COMPLETION_VARIABLE in os.environ else parse(argv)
    from openspec_cli import commands

    commands.settings.owns_process = True
    if parsed is None:
        from openspec_cli import cli

        cli.main()
        return
    name, values, debug = parsed
    commands.settings.debug = debug
    getattr(commands, name)(**values)
