"""``python -m auralisd`` and the ``auralisd`` command (``[project.scripts]`` points here).

Imports nothing of the daemon at module level, on purpose: multiprocessing's ``spawn`` start
method (trio-parallel's worker processes) re-runs the parent's main script in every worker
before the job arrives. For the ``auralisd`` command that script is the console-script wrapper,
which imports this module, so a heavy import here would load the whole daemon (trio, the
actors, the transports: about 30 MiB) into each worker (tests/auralisd/test_imports.py).
"""

import sys


def main() -> int:
    from .main import main as run

    return run()


if __name__ == "__main__":
    sys.exit(main())
