"""``python -m lottery_prior.cli``: the ``lip`` command."""

import sys

from lottery_prior.cli import main

sys.exit(main())
