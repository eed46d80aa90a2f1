"""The chapter contract (advlab.chapter): every chapter is discovered and follows it; cache keys
come from the objects themselves; the skeleton in book/contributing.md runs as documented."""
import dataclasses
import re
import sys
import types
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from advlab import attacks  # noqa: E402
from advlab.chapter import Chapter, RunContext, Settings, SettingsError, identity, piece_key  # noqa: E402
from advlab.data import ImageSet  # noqa: E402
from advlab.experiments import chapter_ids, chapters  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def perturbed(value, hint):
    """A different value of the same type (to see a key change)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 0.5 if value else 0.5
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, tuple):
        return value[:-1] if len(value) > 1 else value + value
    if value is None:
        return 1
    return None


@pytest.fixture(scope="module")
def every_chapter():
    return chapters()


def test_chapters_are_discovered_in_order(every_chapter):
    assert list(every_chapter) == chapter_ids() == [f"ch{i:02d}" for i in range(6)]
    for cid, ch in every_chapter.items():
        assert isinstance(ch, Chapter) and ch.id == cid and ch.title
        assert {"smoke", "full"} <= set(ch.profiles)
        assert all(isinstance(p, ch.Settings) for p in ch.profiles.values())
        assert all(re.fullmatch(rf"tab-{cid}-[a-z0-9-]+", t) for t in ch.tables), ch.tables
        assert all(re.fullmatch(rf"{cid}_[a-z0-9_]+", f) for f in ch.figures), ch.figures


def test_unknown_or_mistyped_settings_fail_in_one_line(every_chapter):
    for ch in every_chapter.values():
        with pytest.raises(SettingsError, match="unknown setting"):
            ch.settings("smoke", no_such_setting=1)
        with pytest.raises(SettingsError, match="seed must be a whole number"):
            ch.settings("smoke", seed="zero")
        with pytest.raises(SettingsError, match="unknown profile 'bogus'"):
            ch.settings("bogus")
        for missing in {"smoke", "full", "cpu", "paper"} - set(ch.profiles):
            with pytest.raises(SettingsError, match=f"{ch.id} has no profile '{missing}'"):
                ch.settings(missing)


def test_changing_any_setting_changes_the_keys_that_depend_on_it(every_chapter):
    for ch in every_chapter.values():
        for profile, s in ch.profiles.items():
            stages = sorted(s.stages())
            for f in dataclasses.fields(s):
                value = perturbed(getattr(s, f.name), f.type)
                try:
                    other = s.replace(**{f.name: value})
                except SettingsError:
                    continue   # the perturbed value is out of range: no key to compare
                assert identity(other.part()) != identity(s.part()), (ch.id, profile, f.name)
                declared = f.metadata.get("stages") or stages
                for st in declared:
                    assert identity(other.part(st)) != identity(s.part(st)), (ch.id, f.name, st)


def test_identity_follows_the_objects_not_the_device():
    net = torch.nn.Linear(4, 2)
    a = identity(net)
    with torch.no_grad():
        net.weight[0, 0] += 1
    assert identity(net) != a
    x = torch.rand(3, 1, 2, 2)
    imgs = ImageSet(x, torch.zeros(3, dtype=torch.long), ("a",), "t")
    other = ImageSet(x.clone(), torch.ones(3, dtype=torch.long), ("a",), "t")
    assert identity(imgs) != identity(other)
    assert identity(attacks.make("bim", steps=10)) != identity(attacks.make("bim", steps=11))
    assert identity(attacks.PGD("linf", 5)) != identity(attacks.PGD("linf", 5, random_start=False))
    assert identity(torch.device("cpu")) == identity(torch.device("cuda"))
    scale = 2.0
    f = lambda v: v * scale  # noqa: E731
    g = lambda v, s=3.0: v * s  # noqa: E731
    assert identity(f) != identity(lambda v: v * 2.5) and "closure" in identity(g)
    assert piece_key("p", {"a": 1}) != piece_key("p", {"a": 2})
    with pytest.raises(TypeError, match="cannot derive a cache identity"):
        identity(object.__new__(type("Slots", (), {"__slots__": ()})))


def skeleton() -> types.ModuleType:
    """The minimal chapter of book/contributing.md, as a module."""
    text = (ROOT / "book" / "contributing.md").read_text()
    code = re.search(r"```python\n(from dataclasses import dataclass\n.*?)```", text, re.S).group(1)
    module = types.ModuleType("advlab_contract_skeleton")
    sys.modules[module.__name__] = module
    exec(compile(code, "contributing.md", "exec"), module.__dict__)
    return module


def test_the_documented_skeleton_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLAB_CACHE", str(tmp_path / "cache"))
    toy = skeleton().CHAPTER
    first = toy("smoke", device="cpu", progress=False)
    assert first.info.stages["attacks"]["computed"] == 3 and first.info.computed_on
    again = toy("smoke", device="cpu", progress=False)
    assert again.info.stages["attacks"]["read"] == 3
    assert again.accuracy.equals(first.accuracy)
    changed = toy("smoke", device="cpu", progress=False, epsilons=(0.05, 0.3))
    assert changed.info.stages["attacks"] == {"seconds": changed.info.stages["attacks"]["seconds"],
                                               "computed": 1, "read": 1}
    written = toy.save(first, tmp_path / "out")
    names = {p.name for p in written}
    assert {"ch99_accuracy.csv", "ch99_run.json", "tab-ch99-accuracy.md"} <= names
    assert "Accuracy under FGSM" in (tmp_path / "out" / "tab-ch99-accuracy.md").read_text()
    with pytest.raises(SettingsError, match="n_images must be >= 1"):
        toy("smoke", n_images=0)


def test_run_context_records_stages_and_devices(tmp_path):
    ctx = RunContext.create("chX", "smoke", "cpu", progress=False, cache_root=tmp_path)
    with ctx.stage("outer"):
        ctx.piece("a", lambda: {"v": 1}, k=1)
        with ctx.stage("inner"):
            ctx.piece("a", lambda: {"v": 2}, k=2)
            ctx.piece("a", lambda: {"v": 3}, k=1)      # same key as the first: read back
    assert ctx.stages["outer"].computed == 1 and ctx.stages["inner"].computed == 1
    assert ctx.stages["inner"].read == 1
    assert sum(ctx.computed_on.values()) == 3
    with pytest.raises(TypeError, match="must compute a dict"):
        ctx.piece("b", lambda: 3)


def test_settings_types_are_checked():
    @dataclasses.dataclass(frozen=True)
    class S(Settings):
        n: int = 1
        eps: tuple[float, ...] = (0.1,)
        name: str | None = None

    assert S(eps=[1, 2]).eps == (1.0, 2.0)
    for bad in (dict(n=1.5), dict(n=True), dict(eps=3), dict(eps=["a"]), dict(name=3)):
        with pytest.raises(SettingsError):
            S(**bad)
