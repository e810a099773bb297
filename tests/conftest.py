"""Shared by every test folder: the helpers beside this file (registry_helpers) are importable everywhere."""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
