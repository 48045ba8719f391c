#!/usr/bin/env python3
"""M3 command line: build the data stack, train, evaluate, predict. See ``--help``."""
import sys

from core.cli import main

if __name__ == "__main__":
    sys.exit(main())
