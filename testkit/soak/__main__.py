"""`python -m testkit.soak`: what scripts/soak runs."""

import sys

from testkit.soak.run import main

sys.exit(main())
