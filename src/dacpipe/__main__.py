"""``python -m dacpipe``: the same as the ``dacpipe`` command."""

import sys

from .cli import main

sys.exit(main())
