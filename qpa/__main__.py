"""``python -m qpa``: the command line (see `qpa.cli`)."""

import sys

from qpa.cli import main

if __name__ == "__main__":
    sys.exit(main())
