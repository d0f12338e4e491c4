"""``python -m auralisd``: same as the ``auralisd`` command."""

import sys

from .main import main

if __name__ == "__main__":
    sys.exit(main())
