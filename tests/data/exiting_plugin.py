"""Calls sys.exit(3) while it is imported: a broken plugin, never rnnbench exiting 3."""

import sys

sys.exit(3)
