"""scripts/student_notebooks.py: the student version holds no solution and no check output; a
stub's check raises "No answer yet"; the instructor version keeps the solutions."""
import importlib.util
import json
from pathlib import Path

import pytest

from advlab import exercises

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("student_notebooks", ROOT / "scripts" / "student_notebooks.py")
student = importlib.util.module_from_spec(spec)
spec.loader.exec_module(student)
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_student_version_hides_the_solutions(path):
    nb = json.loads(path.read_text())
    out = student.student_version(nb)
    assert len(out["cells"]) == len(nb["cells"])
    solutions = [(i, c) for i, c in enumerate(nb["cells"]) if student.exercise_of(c)]
    for i, cell in solutions:
        ex = student.exercise_of(cell)
        stub, check = out["cells"][i], out["cells"][i + 1]
        assert "solution" not in stub["metadata"]["tags"] and "exercise" in stub["metadata"]["tags"]
        assert "".join(stub["source"]) != "".join(cell["source"]) and "..." in "".join(stub["source"])
        assert stub["outputs"] == [] and check["outputs"] == []
        assert student.is_check_of(check, ex)
        # the stub's check tells the student the answer is missing
        ns = {"exercises": exercises}
        exec("".join(stub["source"]), ns)
        with pytest.raises(AssertionError, match="No answer yet|returned nothing"):
            exercises.check(ex, ns["answer"], *([None] * 3 if ex == "ch02-ex3" else []))
    text = json.dumps(out)
    for _, cell in solutions:   # no line of a solution survives (beyond imports and the answer name)
        for line in cell["source"]:
            line = line.strip()
            if len(line) > 25 and not line.startswith(("import", "from ", "answer = ", "def ", "#")):
                assert line not in text, line
    # the instructor version keeps everything and unfolds the solutions
    inst = student.instructor_version(nb)
    assert [c["source"] for c in inst["cells"]] == [c["source"] for c in nb["cells"]]
    assert all("hide-input" not in c["metadata"].get("tags", []) for c in inst["cells"] if student.exercise_of(c))


def test_script_writes_both_versions(tmp_path):
    assert student.main(["--out", str(tmp_path / "s")]) == 0
    assert student.main(["--out", str(tmp_path / "i"), "--instructor"]) == 0
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [p.name for p in NOTEBOOKS]
    assert sorted(p.name for p in (tmp_path / "i").iterdir()) == [p.name for p in NOTEBOOKS]
