"""``python -m alpr.serving``: the KServe model server (:func:`alpr.serving.server.main`)."""

import sys

from alpr.serving.server import main

sys.exit(main())
