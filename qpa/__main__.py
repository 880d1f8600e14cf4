"""``python -m qpa``: the command line (see `qpa.cli.main`)."""

import sys

from qpa.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
