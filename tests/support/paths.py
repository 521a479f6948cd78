"""Where the repository and the shared test data are."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
"""Real telescope MSs beside the project (absent in a user's clone: tests skip then)."""
