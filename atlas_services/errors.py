"""The one error type users see, and the one place that turns it into an exit."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

# Exit codes every ATLAS command uses.
EXIT_OK = 0
EXIT_FAILED = 1  # the operation ran and failed, or a check found a problem
EXIT_REFUSED = 2  # bad usage or bad input: refused before anything changed
EXIT_INTERRUPTED = 130


class AtlasError(Exception):
    """A failure a user can act on: what went wrong, and what to do next.

    Raised anywhere, caught once by `run_main`, printed as one line.
    """

    def __init__(self, what: str, hint: str | None = None, *, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(what)
        self.what = what
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.what} — {self.hint}" if self.hint else self.what


class Refused(AtlasError):
    """Bad input or a guard that said no; nothing was changed."""

    def __init__(self, what: str, hint: str | None = None) -> None:
        super().__init__(what, hint, exit_code=EXIT_REFUSED)


def run_main(program: str, main: Callable[[Sequence[str]], int], argv: Sequence[str]) -> int:
    """Run a command's main function; report user errors as one line, never a traceback.

    With `--debug` among the arguments the traceback is shown as well.
    """
    debug = "--debug" in argv
    try:
        return main(argv)
    except AtlasError as err:
        if debug:
            logging.getLogger(program).exception("%s", err)
        print(f"{program}: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
