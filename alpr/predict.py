"""``python -m alpr.predict``: kept for the documented command; the reader lives in :mod:`alpr.serving.predict`
(also ``alpr predict``)."""

import sys

from alpr.serving.predict import main

if __name__ == "__main__":
    sys.exit(main())
