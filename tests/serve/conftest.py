"""Fixtures for the service tests (``par_model_dir`` / ``pipeline``: tests/conftest.py)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # serve_testlib
