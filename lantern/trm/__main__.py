"""`python -m lantern.trm STEP ...` is `lantern trm STEP ...` (the guide's `-m` calls)."""

import sys

from lantern.cli.main import main

sys.exit(main(["trm", *sys.argv[1:]]))
