"""The project's error type: bad input becomes one clear line and exit status 2 (`guarded`)."""

import sys
from collections.abc import Callable


class EznasError(Exception):
    """A problem the user can fix (bad input, missing data, bad config).

    The message is a single line that says what is wrong, where (file, key, value) and how
    to fix it. The CLI prints it as ``eznas: error: <message>`` and exits with status 2.
    """


def guarded(prog: str, body: Callable[[], int]) -> int:
    """Run a command's body and return its exit status: an `EznasError` becomes ``PROG: error:
    MESSAGE`` on stderr and status 2, Ctrl-C ``PROG: interrupted`` and status 130 (no traceback;
    what the command saved before stays saved)."""
    try:
        return body()
    except EznasError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
