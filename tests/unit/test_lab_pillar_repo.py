"""lab/pillar_repo.py: `up` seeds the lab's pillar repository again from
pillar/lab, and the commits pushed to it since its last seed are kept in a
bundle and listed, not dropped silently (issue 19)."""

import io
import subprocess

from lab import pillar_repo


def _git(*args, cwd=None):
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, env=pillar_repo.GIT_ENV | {"PATH": "/usr/bin:/bin"}
    )


def _seeded(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "other.sls").write_text("other: 1\n")  # no secrets: nothing to encrypt
    repo = tmp_path / "pillar.git"
    pillar_repo.seed(tmp_path / "master", src=src, repo=repo, home=tmp_path / "gpg")
    for name in pillar_repo.HOOKS:  # this test's own repository: no gate, no apply
        (repo / "hooks" / name).unlink()
    return src, repo


def _push(repo, tmp_path, message):
    work = tmp_path / "work"
    if not work.exists():
        _git("clone", "-q", "-b", pillar_repo.BRANCH, str(repo), str(work))
    (work / "other.sls").write_text(f"other: {message!r}\n")
    _git("commit", "-q", "-am", message, cwd=work)
    _git("push", "-q", "origin", pillar_repo.BRANCH, cwd=work)


def test_a_fresh_seed_has_nothing_pushed_and_no_bundle(tmp_path):
    _, repo = _seeded(tmp_path)
    assert pillar_repo.pushed_since_seed(repo) == []
    assert pillar_repo.keep_pushed(repo, out=io.StringIO()) is None
    assert pillar_repo.pushed_since_seed(tmp_path / "none.git") == []


def test_commits_pushed_since_the_seed_are_bundled_and_listed_before_a_reseed(tmp_path):
    src, repo = _seeded(tmp_path)
    _push(repo, tmp_path, "operator: weight 50")
    _push(repo, tmp_path, "operator: drain web-2")
    pushed = pillar_repo.pushed_since_seed(repo)
    assert [line.split(" ", 1)[1] for line in pushed] == ["operator: drain web-2", "operator: weight 50"]
    said = io.StringIO()
    bundle = pillar_repo.keep_pushed(repo, out=said)
    assert bundle is not None and bundle.parent == repo.parent
    assert "2 commit(s) pushed" in said.getvalue() and "operator: drain web-2" in said.getvalue() and str(bundle) in said.getvalue()
    back = tmp_path / "back"
    _git("clone", "-q", "-b", pillar_repo.BRANCH, str(bundle), str(back))
    assert (back / "other.sls").read_text() == "other: 'operator: drain web-2'\n"
    # the re-seed: the repository holds the seed alone again
    pillar_repo.seed(tmp_path / "master", src=src, repo=repo, home=tmp_path / "gpg")
    assert pillar_repo.pushed_since_seed(repo) == []
    assert pillar_repo.read("other.sls", repo=repo) == "other: 1\n"
