"""``personlens train reid --lifelong`` / ``eval reid --lifelong``: a user's cameras learned in
sequence (tiny generated crops), and the bad input the issue lists."""
from __future__ import annotations

import json

import pytest

from cli_testlib import invoke
from crops_testlib import crop_image


def _domain(root, persons=("ann", "bob", "cy"), cams=(1, 2), per=2, start=0):
    """A folder per person, the camera in the file name."""
    i = start
    for p in persons:
        (root / p).mkdir(parents=True, exist_ok=True)
        for c in cams:
            for j in range(per):
                crop_image(i).save(root / p / f"{p}_c{c}_{j}.png")
                i += 1
    return root


@pytest.fixture(scope="module")
def first_head(tmp_path_factory):
    from click.testing import CliRunner

    tmp = tmp_path_factory.mktemp("lifelong")
    runner = CliRunner()
    r = invoke(runner, "train", "reid", "--lifelong", "--domain", f"shopA={_domain(tmp / 'a')}",
               "--strategy", "finetune", "--iterations", "2", "--out", tmp / "head1",
               "--cache", tmp / "cache", "--no-progress")
    assert r.exit_code == 0, r.output
    return tmp


def test_train_then_continue_on_new_cameras(first_head, runner):
    tmp = first_head
    cfg = json.loads((tmp / "head1" / "config.json").read_text())
    assert [d["name"] for d in cfg["domains"]] == ["shopA"] and cfg["memory_names"] == ["shopA"]
    b = _domain(tmp / "b", persons=("dee", "eve"), start=40)
    r = invoke(runner, "train", "reid", "--lifelong", "--from", tmp / "head1", "--domain",
               f"shopB={b}", "--strategy", "lwf", "--iterations", "2", "--out", tmp / "head2",
               "--cache", tmp / "cache", "--no-progress")
    assert r.exit_code == 0, r.output
    cfg2 = json.loads((tmp / "head2" / "config.json").read_text())
    assert [d["name"] for d in cfg2["domains"]] == ["shopA", "shopB"]
    assert cfg2["memory_names"] == ["shopA", "shopB"]
    # the head continued from is untouched
    assert json.loads((tmp / "head1" / "config.json").read_text()) == cfg


def test_the_default_strategy_keeps_each_new_domains_style_memory(first_head, runner):
    """vladr_styles (the default) stores the new cameras' styles beside the weights, and a head
    continued again replays them; a head learned by fine-tuning has none to replay."""
    tmp = first_head
    for name, src, out, start in (("shopD", "head1", "head-d", 60), ("shopE", "head-d", "head-e", 70)):
        d = _domain(tmp / name, persons=(f"{name}1", f"{name}2"), start=start)
        r = invoke(runner, "train", "reid", "--lifelong", "--from", tmp / src, "--domain", f"{name}={d}",
                   "--iterations", "2", "--out", tmp / out, "--cache", tmp / "cache", "--no-progress")
        assert r.exit_code == 0, r.output
    cfg = json.loads((tmp / "head-e" / "config.json").read_text())
    assert [d["strategy"] for d in cfg["domains"]] == ["finetune", "vladr_styles", "vladr_styles"]
    assert cfg["style_memory_names"] == ["shopD", "shopE"]


@pytest.mark.parametrize("case,message", [
    ("one_person", "need at least 2"),
    ("one_camera", "no person is seen by two cameras"),
    ("same_name", "was learned already"),
    ("same_people", "were learned in domain 'shopA'"),
    ("stores_images", "stores images"),
    ("bad_spec", "NAME=PATH"),
])
def test_bad_domains_are_refused_and_nothing_is_written(first_head, runner, case, message):
    tmp = first_head
    d = tmp / f"bad-{case}"
    name, strategy = "shopC", "vladr"
    if case == "one_person":
        _domain(d, persons=("zed",))
    elif case == "one_camera":
        _domain(d, persons=("x1", "x2"), cams=(1,))
    elif case == "same_name":
        _domain(d, persons=("x1", "x2"))
        name = "shopA"
    elif case == "same_people":
        _domain(d, persons=("ann", "x2"))
    elif case == "stores_images":
        _domain(d, persons=("x1", "x2"))
        strategy = "rehearsal_distill"
    spec = f"{name}={d}" if case != "bad_spec" else "shopC"
    out = tmp / f"out-{case}"
    r = invoke(runner, "train", "reid", "--lifelong", "--from", tmp / "head1", "--domain", spec,
               "--strategy", strategy, "--iterations", "1", "--out", out, "--cache", tmp / "cache",
               "--no-progress")
    assert r.exit_code != 0
    assert message in r.output
    assert not out.exists()


def test_from_a_head_without_prototype_memory_is_refused(first_head, runner, tmp_path):
    from personlens.models import hub

    r = invoke(runner, "train", "reid", "--lifelong", "--from", hub.shipped_dir("reid"),
               "--domain", f"x={_domain(tmp_path / 'x')}", "--out", tmp_path / "o",
               "--cache", first_head / "cache", "--no-progress")
    assert r.exit_code != 0 and "prototype memory" in r.output
    assert not (tmp_path / "o").exists()


def test_eval_lifelong_needs_a_head_and_data(first_head, runner, tmp_path):
    r = invoke(runner, "eval", "reid", "--lifelong", "--out", tmp_path / "r.json")
    assert r.exit_code != 0 and "--reid-head" in r.output
    r = invoke(runner, "eval", "reid", "--lifelong", "--reid-head", first_head / "head1",
               "--out", tmp_path / "r.json")
    assert r.exit_code != 0 and "--root" in r.output


def test_info_shows_the_domains_a_head_learned(first_head, runner):
    r = invoke(runner, "info", "--reid-head", first_head / "head1")
    assert r.exit_code == 0, r.output
    assert "learned in order: shopA (3 persons)" in r.output
    assert "prototype memory: shopA" in r.output
    assert "vladr" in r.output                                    # the strategies are listed
    r = invoke(runner, "info", "--json", "--reid-head", first_head / "head1")
    data = json.loads(r.output)
    assert data["reid_head"]["domains"][0]["name"] == "shopA"


def test_index_and_similar_with_a_lifelong_head(first_head, runner, tmp_path):
    """The user's continued head serves ``index``/``similar``; the library remembers it."""
    crops = _domain(tmp_path / "crops", persons=("p1", "p2"), start=80)
    db = tmp_path / "db"
    r = invoke(runner, "index", crops, "--db", db, "--reid-head", first_head / "head1",
               "--no-descriptions", "--no-progress")
    assert r.exit_code == 0, r.output
    query = sorted(crops.rglob("*.png"))[0]
    r = invoke(runner, "similar", query, "--db", db, "--top-k", 2, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)[0]["results"]
    assert len(res) == 2 and all(h["path"] != str(query.resolve()) for h in res)
    r = invoke(runner, "info", "--db", db, "--json")
    assert str(first_head / "head1") in json.dumps(json.loads(r.output))
