"""``python -m alpr.monitoring``: the same as ``alpr monitor`` (:func:`alpr.monitoring.cli.main`)."""

import sys

from alpr.monitoring.cli import main

if __name__ == "__main__":
    sys.exit(main())
