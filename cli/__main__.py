"""``python -m cli``: the same as the ``senbert`` command."""

import sys

from cli import main

sys.exit(main())
