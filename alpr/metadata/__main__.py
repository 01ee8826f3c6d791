"""``python -m alpr.metadata …``: the metadata store's CLI (:mod:`alpr.metadata.cli`)."""

import sys

from alpr.metadata.cli import main

if __name__ == "__main__":
    sys.exit(main())
