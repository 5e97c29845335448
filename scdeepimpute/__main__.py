"""``python -m scdeepimpute``: the same command line as the ``scdeepimpute`` entry point."""

import sys

from ._cli import main

sys.exit(main())
