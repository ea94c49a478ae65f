"""`python -m searche1.cli`."""

import sys

from searche1.cli import main

sys.exit(main())
