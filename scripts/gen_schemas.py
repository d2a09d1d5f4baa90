#!/usr/bin/env python3
"""Write schemas/<kind>.json from the models; run after changing reconciler/models.py.

Usage: python scripts/gen_schemas.py [--check]   (--check: write nothing, exit 1 if a file is stale)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

from reconciler.spec.models import Kind  # noqa: E402
from reconciler.spec.schema import render_schema, schema_file  # noqa: E402


def main(argv: list[str]) -> int:
    check = "--check" in argv
    out_dir = ROOT / "schemas"
    out_dir.mkdir(exist_ok=True)
    stale = []
    for kind in Kind:
        path, text = out_dir / schema_file(kind), render_schema(kind)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not check:
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{'stale' if check else 'wrote'} {path.relative_to(ROOT)}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
