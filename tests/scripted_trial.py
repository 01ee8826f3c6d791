"""A stand-in for ``python -m alpr.tuning.trial`` whose metrics are a known function of its hyperparameters.

For the tests of the local tuner's mechanics (median stopping, failures, timeouts), which need trials that report
predictable values in seconds. It takes the real entry point's command line (parsed by the real parser) and
prints the real metric format; instead of training it reports, after each of ``--epochs`` "validations"
(0.05 s apart), ``eir = min(1, lr * 100) * step / epochs``, ``mAP = eir / 2`` and ``loss = 1 / step``.
``--batch-size 16`` makes it crash after one validation (exit status 3).
"""

import sys
import time

from alpr.tuning.collector import format_metrics
from alpr.tuning.trial import FINAL_PREFIX, parse_args


def main() -> int:
    args, hp = parse_args(sys.argv[1:])
    eir = 0.0
    for step in range(1, hp.epochs + 1):
        time.sleep(0.05)
        eir = min(1.0, hp.lr * 100) * step / hp.epochs
        for line in format_metrics({"eir": eir, "mAP": eir / 2, "loss": 1 / step}):
            print(line, flush=True)
        if hp.batch_size == 16:
            print("RuntimeError: scripted crash", file=sys.stderr, flush=True)
            return 3
    print(FINAL_PREFIX + f'{{"eir": {eir}}}', flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
