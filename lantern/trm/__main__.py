"""`python -m lantern.trm STEP ...` is `lantern trm STEP ...` (for scripts that call it with `-m`)."""

import sys

from lantern.cli.main import main

sys.exit(main(["trm", *sys.argv[1:]]))
