"""The experiment scripts (``python -m experiments.<name>``).

Started as a script, the process is made robust before JAX is imported (see
:func:`experiments._lib.cli.script_start`): closed or unencodable standard streams, a closed pipe,
and Ctrl-C/SIGTERM during start-up."""
import sys as _sys

if _sys.argv[:1] == ["-m"]:   # runpy sets argv[0] to "-m" while it imports the package
    from experiments._lib import cli as _cli

    _cli.script_start()
