"""Fakes of `az`, `azd` and the operator CLI's Python for the azd hook tests: put on PATH (or named by
ACSD365_PYTHON), each call is appended to a JSON-lines log (tool, argv, the content of an `--file`
argument, the environment variables the test asks about) and answered from rules.

A rule answers the first call whose arguments contain its `match` tokens in order: `stdout`, `stderr`,
`rc`; with `fail_first` it answers the first N matching calls with `fail_stderr` and rc 1 instead (a
role assignment not applied yet). Calls no rule matches succeed with no output. The fake Python runs
the real interpreter for everything but `-m shared.cli`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _matches(tokens: list[str], argv: list[str]) -> bool:
    position = 0
    for token in tokens:
        try:
            position = argv.index(token, position) + 1
        except ValueError:
            return False
    return True


def main() -> int:
    tool = Path(sys.argv[0]).name
    argv = sys.argv[1:]
    if tool == "python" and argv[:2] != ["-m", "shared.cli"]:
        os.execv(os.environ["FAKE_REAL_PYTHON"], [os.environ["FAKE_REAL_PYTHON"], *argv])
    state_dir = Path(os.environ["FAKE_TOOLS_DIR"])
    record = {"tool": tool, "argv": argv}
    if "--file" in argv:
        record["file"] = Path(argv[argv.index("--file") + 1]).read_text()
    record["env"] = {
        name: os.environ.get(name) for name in os.environ.get("FAKE_RECORD_ENV", "").split(",") if name
    }
    with (state_dir / "calls.jsonl").open("a") as log:
        log.write(json.dumps(record) + "\n")
    rules_file = state_dir / "rules.json"
    rules = json.loads(rules_file.read_text())
    for rule in rules:
        if rule["tool"] == tool and _matches(rule["match"], argv):
            if rule.get("fail_first", 0) > 0:
                rule["fail_first"] -= 1
                rules_file.write_text(json.dumps(rules))
                sys.stderr.write(rule.get("fail_stderr", "(Forbidden) Caller is not authorized"))
                return 1
            sys.stdout.write(rule.get("stdout", ""))
            sys.stderr.write(rule.get("stderr", ""))
            return rule.get("rc", 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
