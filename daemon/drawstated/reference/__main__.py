"""`python -m drawstated.reference [ROOT]`: rewrite the generated blocks of the docs under ROOT."""

import sys
from pathlib import Path

from drawstated.reference import main

sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()))
