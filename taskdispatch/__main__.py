"""`python -m taskdispatch ...` is the `taskdispatch` command (for a checkout not installed)."""

import sys

from taskdispatch.dev.cli import main

sys.exit(main())
