"""`python -m rotation_cli <command> ...`"""

from __future__ import annotations

import sys

from rotation_cli.cli import main

sys.exit(main())
