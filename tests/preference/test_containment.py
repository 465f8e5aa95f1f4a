"""No file outside the pack is ever served: links leaving the pack refuse it at start, attention-check names
cannot be planted, and a file swapped for a link while the server runs is refused when asked for."""

import hashlib
import json
import os
import shutil

import pytest

from lightning_svd.errors import UserError
from lightning_svd.preference.app import create_app
from lightning_svd.preference.assignment import attention_arm
from lightning_svd.preference.pack import StudyPack

SECRET = "/etc/passwd"


def swap_for_link(path, target) -> None:
    """Replace `path` by a symbolic link to `target` in one step, as an attacker with write access would."""
    link = path.with_name(path.name + ".swap")
    os.symlink(target, link)
    os.replace(link, path)


@pytest.mark.parametrize("relative, target", [
    ("attention_checks/0123456789abcdef.mp4", SECRET),
    ("videos/extra.mp4", SECRET),
    ("videos/elsewhere", "/etc"),
    ("dangling.mp4", "/nonexistent/file.mp4"),
])
def test_a_link_leaving_the_pack_refuses_it_at_start_naming_the_file(pack_dir, relative, target):
    (pack_dir / relative).parent.mkdir(exist_ok=True)
    os.symlink(target, pack_dir / relative)
    with pytest.raises(UserError, match=f"{relative} is a link to {target}, outside the pack"):
        StudyPack.load(pack_dir)


def test_a_link_inside_the_pack_is_served(pack_dir, open_study):
    os.symlink("crisp/red_ball.mp4", pack_dir / "videos" / "alias.mp4")
    manifest = json.loads((pack_dir / "manifest.json").read_text())
    entry = next(v for v in manifest["videos"] if v["arm"] == "crisp" and v["prompt_id"] == "red_ball")
    entry["path"] = "videos/alias.mp4"
    (pack_dir / "manifest.json").write_text(json.dumps(manifest))
    study = open_study(attention_check_rate=0.0)
    answer = create_app(study).test_client().get(f"/video/{study.video_ids[('crisp', 'red_ball')]}")
    assert answer.status_code == 200 and answer.data == (pack_dir / "videos/crisp/red_ball.mp4").read_bytes()


def test_a_planted_attention_check_is_never_served(pack_dir, open_study):
    """The issue's attack: a file at the name the app used to predict for its own check is not taken for it."""
    pack = StudyPack.load(pack_dir)
    (pack_dir / "attention_checks").mkdir()
    planted = []
    for index, prompt in enumerate(pack.prompts):
        source = pack.videos[(attention_arm(pack, index), prompt.id)]
        old_name = hashlib.sha256(f"{source.relative_path}|0".encode()).hexdigest()[:16]
        planted.append(pack_dir / "attention_checks" / f"{old_name}.mp4")
        shutil.copy(source.path, planted[-1])
    study = open_study(attention_check_rate=0.5)
    served = set(study.video_files.values())
    assert len(served) == 9 + 3 and not served & {path.resolve() for path in planted}


def test_files_swapped_for_links_while_serving_are_refused(pack_dir, open_study, as_rater, tmp_path):
    study = open_study(attention_check_rate=0.9)
    client = create_app(study).test_client()
    urls = set()
    for rater in ("ann", "ben", "cat", "dan", "eve", "fay"):
        item = client.get("/api/next", headers=as_rater(study, rater)).get_json()
        urls |= {item["left"]["url"], item["right"]["url"]}
    by_folder = {}
    for url in urls:
        assert client.get(url).status_code == 200
        by_folder.setdefault(study.video_files[url.split("/")[-1]].parent.name, url)
    assert "attention_checks" in by_folder, "an attention check was handed out"

    checked = by_folder.pop("attention_checks")
    swap_for_link(study.video_files[checked.split("/")[-1]], SECRET)
    answer = client.get(checked)
    assert answer.status_code == 404 and b"root:" not in answer.data

    folder_url = next(iter(by_folder.values()))
    folder = study.video_files[folder_url.split("/")[-1]].parent
    decoy = shutil.copytree(folder, tmp_path / "decoy")
    os.rename(folder, folder.with_name(folder.name + "_moved"))
    os.symlink(decoy, folder)
    assert client.get(folder_url).status_code == 404, "a folder swapped for a link to elsewhere"

    manifest_video = next(p for p in study.video_files.values() if p.parent.name not in (folder.name,
                                                                                          "attention_checks"))
    video_id = next(i for i, p in study.video_files.items() if p == manifest_video)
    swap_for_link(manifest_video, SECRET)
    answer = client.get(f"/video/{video_id}")
    assert answer.status_code == 404 and b"root:" not in answer.data
