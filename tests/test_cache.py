"""build_once: builds a keyed folder once, atomically, and leaves nothing behind when a build fails;
build_once_resuming: the same for builds that resume where an interrupted one stopped."""

import pytest

from lightning_svd.cache import build_once, build_once_resuming


def test_builds_once_then_returns_the_cached_folder(tmp_path):
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "value.txt").write_text("42")

    first = build_once(tmp_path / "things", "k1", build)
    second = build_once(tmp_path / "things", "k1", build)
    assert first == second == tmp_path / "things" / "k1"
    assert (first / "value.txt").read_text() == "42"
    assert len(calls) == 1 and calls[0] != first  # built in a temporary sibling, then renamed
    assert [p.name for p in (tmp_path / "things").iterdir()] == ["k1"]


def test_a_failed_build_leaves_nothing(tmp_path):
    def build(folder):
        (folder / "half.txt").write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        build_once(tmp_path, "k1", build)
    assert list(tmp_path.iterdir()) == []


def test_a_concurrent_winner_is_kept(tmp_path):
    """Another process finishing first (simulated by a nested build) wins; this build's result is dropped."""

    def loser(folder):
        (folder / "who.txt").write_text("loser")
        build_once(tmp_path, "k1", lambda winner: (winner / "who.txt").write_text("winner"))

    assert (build_once(tmp_path, "k1", loser) / "who.txt").read_text() == "winner"
    assert [p.name for p in tmp_path.iterdir()] == ["k1"]


@pytest.mark.parametrize("key", ["", "a/b", "..", ".hidden"])
def test_keys_must_be_plain_folder_names(tmp_path, key):
    with pytest.raises(ValueError, match="plain folder name"):
        build_once(tmp_path, key, lambda folder: None)


def test_an_interrupted_resumable_build_resumes_in_its_work_folder_then_publishes(tmp_path):
    seen = []

    def interrupted(work):
        (work / "step1.txt").write_text("done")
        raise KeyboardInterrupt

    def resumed(work):
        seen.append(sorted(p.name for p in work.iterdir()))
        (work / "step2.txt").write_text("done")

    with pytest.raises(KeyboardInterrupt):
        build_once_resuming(tmp_path, "k1", interrupted)
    assert [p.name for p in tmp_path.iterdir()] == [".k1.work"]  # nothing published, the work kept
    final = build_once_resuming(tmp_path, "k1", resumed)
    assert seen == [["step1.txt"]] and sorted(p.name for p in final.iterdir()) == ["step1.txt", "step2.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["k1"]
    assert build_once_resuming(tmp_path, "k1", interrupted) == final  # published: not built again
