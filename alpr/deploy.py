"""``python -m alpr.deploy``: the Deploy CLI under its old name (README); the code is :mod:`alpr.steps.deploy`."""

import sys

from alpr.steps.deploy import main

if __name__ == "__main__":
    sys.exit(main())
