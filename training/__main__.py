"""``python -m training`` is the ``seqcast`` command; torchrun launches it as ``-m training``."""

import sys

from training.cli import main

sys.exit(main())
