"""`python -m taskdispatch ...` is the `taskdispatch` command (for a checkout not installed)."""

import sys

from taskdispatch.cli import main

sys.exit(main())
