"""How mmfd's tools end on a user error: the message, not a traceback.

mmfd's own errors (ConfigError, CheckpointError, DataError, NonFiniteError, all
:class:`~mmfd.utils.errors.MMFDError`) already say what is wrong and what to do;
a long Python traceback above them only hides that. ``run_tool(main)`` prints
``<ErrorType>: <message>`` on stderr and exits with status 1. Set ``MMFD_DEBUG=1``
or pass ``--debug`` to any tool to get the full traceback. Other exceptions (bugs)
keep their traceback.
"""
import os
import sys

from mmfd.utils.errors import MMFDError

DEBUG_FLAG = '--debug'


def run_tool(main) -> None:
    """Runs ``main()`` and exits with its return value (0 for None)."""
    debug = os.environ.get('MMFD_DEBUG', '') not in ('', '0') or DEBUG_FLAG in sys.argv
    if DEBUG_FLAG in sys.argv:
        sys.argv.remove(DEBUG_FLAG)
    try:
        code = main()
    except MMFDError as err:
        if debug:
            raise
        print(f'{type(err).__name__}: {err}', file=sys.stderr)
        print(f'(set MMFD_DEBUG=1 or pass {DEBUG_FLAG} for the traceback)', file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
