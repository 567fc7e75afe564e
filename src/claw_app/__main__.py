"""`python -m claw_app` is the `claw` command."""

import sys

from claw_app.cli import main

sys.exit(main())
