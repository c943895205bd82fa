"""`python -m rlreason ...` is the same as the `rlreason` command."""

import sys

from rlreason.cli import main

sys.exit(main())
