"""Re-run the shell examples in README.md and replace their output with what mixcli prints now.

Every fenced block whose first line starts with ``$ mixcli`` (continued over
lines ending in ``\\``, and possibly piped through further commands) is run
with bash from a scratch directory where ``classroom.csv`` is the real
classroom data (read in place from ../shared, never copied into the project),
and everything after the command in the block is replaced by its combined
stdout and stderr. So the README shows real output, and ``git diff`` shows
what a change to mixcli changed in it.

    make readme          # or: .venv/bin/python tests/readme_examples.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```\n(\$ mixcli .*?)```", re.S)


def classroom() -> Path:
    path = Path(os.environ.get("MIXCLI_SHARED") or ROOT.parent / "shared") / "data" / "classroom.csv"
    if path.exists():
        return path
    sys.exit("readme_examples: the classroom data (../shared/data/classroom.csv) is not available")


def split_command(block: str) -> tuple[str, str]:
    lines = block.splitlines()
    cmd = [lines[0]]
    while cmd[-1].endswith("\\") and len(cmd) < len(lines):
        cmd.append(lines[len(cmd)])
    return "\n".join(cmd), "\n".join(lines[len(cmd):])


def run(command: str, workdir: Path) -> str:
    env = dict(os.environ, PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
               PYTHONUNBUFFERED="1", NO_COLOR="1", COLUMNS="200")
    shell = command[2:]  # drop the prompt
    proc = subprocess.run(["bash", "-c", "{ " + shell + "\n} 2>&1"], cwd=workdir, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"readme_examples: failed ({proc.returncode}): {shell}\n{proc.stdout}{proc.stderr}")
    return proc.stdout.rstrip("\n")


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "classroom.csv").symlink_to(classroom())
        if (classroom().parent / "kb07.csv").exists():  # (the emmeans example)
            (work / "kb07.csv").symlink_to(classroom().parent / "kb07.csv")

        def replace(match: re.Match) -> str:
            command, _ = split_command(match.group(1))
            print(f"running: {command.splitlines()[0]}", file=sys.stderr)
            return f"```\n{command}\n{run(command, work)}\n```"

        new = BLOCK.sub(replace, text)
    if new != text:
        readme.write_text(new)
        print("README.md updated", file=sys.stderr)
    else:
        print("README.md already current", file=sys.stderr)


if __name__ == "__main__":
    main()
