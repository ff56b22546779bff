"""Fail when a module of the package grows past the hard cap (DESIGN.md: aim <= 400, cap 800 lines)."""

from __future__ import annotations

import sys
from pathlib import Path

HARD_CAP = 800
AIM = 400


def main() -> int:
    """Print modules over the aim; exit 1 if any is over the cap."""
    root = Path(__file__).resolve().parent.parent / "src" / "llmgate"
    failed = False
    for path in sorted(root.rglob("*.py")):
        lines = sum(1 for _ in path.open(encoding="utf-8"))
        if lines > HARD_CAP:
            print(f"{path.relative_to(root.parent)}: {lines} lines, over the hard cap of {HARD_CAP}")
            failed = True
        elif lines > AIM:
            print(f"note: {path.relative_to(root.parent)}: {lines} lines (aim is {AIM})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
