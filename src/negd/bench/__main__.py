"""``python -m negd.bench``: the same as ``negd bench``."""

import sys

from negd.bench.cli import main

sys.exit(main())
