"""`ganworks` with every DCGAN model call held while a file exists: a test keeps calls in flight as long as it needs, on any hardware.

Run as `python -m tests.generator.held_model generator serve …` with GANWORKS_TEST_HOLD_FILE set; everything else
(the command line, the signal handling, the drain) is the real `ganworks` CLI.
"""

from __future__ import annotations

import os
import sys
import time

from ganworks.models import dcgan

_HOLD = os.environ["GANWORKS_TEST_HOLD_FILE"]
_generate = dcgan.DCGAN.generate


def _held_generate(self, *args, **kwargs):
    while os.path.exists(_HOLD):
        time.sleep(0.01)
    return _generate(self, *args, **kwargs)


dcgan.DCGAN.generate = _held_generate

if __name__ == "__main__":
    from ganworks.cli import main

    sys.exit(main(sys.argv[1:]))
