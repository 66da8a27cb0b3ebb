"""ingest room: `python -m ingest`, the same as `edgewatch ingest`."""

import sys

from ingest.cli import main

sys.exit(main())
