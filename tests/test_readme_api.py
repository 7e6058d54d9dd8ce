"""The README's "Python API" example runs as written (on generated crops, shipped models)."""
from __future__ import annotations

import re
from pathlib import Path

from crops_testlib import write_crops

README = Path(__file__).resolve().parents[1] / "README.md"


def _api_example() -> str:
    text = README.read_text()
    section = text[text.index("### Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_api_runs(tmp_path, monkeypatch, capsys):
    write_crops(tmp_path / "crops", 4)
    monkeypatch.chdir(tmp_path)
    exec(compile(_api_example(), "README.md#python-api", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "4 added; 4 people"
    assert out[-1] == "['describe-peta', 'par-peta', 'par-peta-mamba', 'reid', 'search-peta']"
    search, similar = out[3:6], out[6:9]
    assert [line.split()[0] for line in search + similar] == ["1", "2", "3"] * 2, "\n".join(out)
    assert all(" The image shows " in line for line in search)      # stored descriptions
    # similar() on a crop in the library ranks the other people (the query itself is left out)
    assert all(line.split()[1].endswith(".png") and "crop000" not in line for line in similar)
    assert (tmp_path / "demo-db" / "personlens.sqlite").is_file()
