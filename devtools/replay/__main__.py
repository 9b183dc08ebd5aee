import sys

from devtools.replay.cli import main

sys.exit(main())
