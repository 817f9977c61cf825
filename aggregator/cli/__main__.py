"""``python -m aggregator.cli ...``: what the Makefile, the tests and ``zk0agg start`` (its verifier) run."""

import sys

from aggregator.cli.app import main

sys.exit(main())
