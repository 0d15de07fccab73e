"""Parse every Bicep file under infra/ with pycep, the parser checkov uses.

checkov reports a file it cannot parse as a "parsing error" and still exits 0, so `make infra-check`
parses first and fails here instead. Exit status: 0 when every file parses, 1 otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pycep import BicepParser

INFRA = Path(__file__).resolve().parent


def main() -> int:
    parser = BicepParser()
    files = sorted(INFRA.rglob("*.bicep"))
    failed = 0
    for path in files:
        shown = path.relative_to(INFRA.parent)
        try:
            parser.parse(file_path=path)
        except Exception as exc:  # lark raises several error types; each one means "does not parse"
            failed += 1
            print(f"FAIL {shown}: {exc}", file=sys.stderr)
        else:
            print(f"ok   {shown}")
    if not files:
        print(f"no .bicep file under {INFRA}", file=sys.stderr)
        return 1
    print(f"{len(files) - failed} of {len(files)} Bicep file(s) parse")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
