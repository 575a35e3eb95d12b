"""The README's whole-program examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_example_over_build_services_in_memory_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    programs = [
        block
        for block in re.findall(r"```python\n(.*?)```", readme, re.S)
        if "asyncio.run(" in block and 'storage="memory"' in block
    ]
    assert len(programs) == 1
    script = tmp_path / "example.py"
    script.write_text(programs[0], encoding="utf-8")

    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ada@example.com ")
