#!/usr/bin/env python
"""The one entry point: `python run.py experiment=NAME [profile=tiny|paper] [key=value ...]`; see --help."""

import sys

from lightning_svd.cli import main

if __name__ == "__main__":
    sys.exit(main())
