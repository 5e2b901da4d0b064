"""The README's Python example runs as written and prints what it says."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_runs(project, capsys):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    assert ns["results"].ok and ns["results"]["analyse"].value == "T=310"
    assert "T=310" in capsys.readouterr().out
