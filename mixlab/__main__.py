"""``python -m mixlab`` (and ``torchrun -m mixlab``): the mixlab command line."""

import sys

from mixlab.cli import main

sys.exit(main())
