"""``python -m node.cli``: how tests, scripts and ``zk0agg deploy`` start ``zk0node`` without an installed script."""

import sys

from node.cli import main

sys.exit(main())
