"""One meaning per flag: every option documented, the old spellings still work (hidden, with
one deprecation warning), ``--model NAME`` picks a shipped model, ``--out`` names files."""
from __future__ import annotations

import json

import click
import pytest
from cli_testlib import FIXTURE_ATTRIBUTES, make_runner

from personlens.cli import main


def _commands(cmd=main, path=()):
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield " ".join(path), cmd


def _options(cmd):
    return [p for p in cmd.params if isinstance(p, click.Option)]


def _run(*args):
    return make_runner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_every_option_has_help():
    missing = [(name, o.opts) for name, cmd in _commands() for o in _options(cmd)
               if not o.help]
    assert missing == []


# (command, old spelling, new spelling): the old one is hidden and still accepted
ALIASES = [("attributes", "--top", "--top-k"), ("describe", "--top-k", "--sample-top-k"),
           ("eval describe", "--top-k", "--sample-top-k"), ("train reid", "--peta-root", "--root"),
           ("train reid", "--colour-dim", "--lomo-dim"), ("eval attributes", "--json", "--out"),
           ("eval describe", "--json", "--out"), ("eval search", "--json", "--out"),
           ("eval reid", "--json", "--out")]


@pytest.mark.parametrize("command, old, new", ALIASES)
def test_old_spellings_are_hidden_aliases(command, old, new):
    cmd = dict(_commands())[command]
    by_flag = {f: o for o in _options(cmd) for f in o.opts}
    assert by_flag[old].hidden and not by_flag[new].hidden
    assert old not in by_flag[new].opts  # two options, one meaning: the new one's
    r = _run(*command.split(), "--help")
    assert f"  {new} " in r.stdout and f"  {old} " not in r.stdout


def test_json_is_a_switch_wherever_it_is_shown():
    for name, cmd in _commands():
        for o in _options(cmd):
            if "--json" in o.opts and not o.hidden:
                assert o.is_flag, name


def test_deprecated_alias_works_and_warns_once(par_model_dir, good_images):
    new = _run("attributes", "--weights", par_model_dir, "--top-k", 1, good_images[0])
    old = _run("attributes", "--weights", par_model_dir, "--top", 1, good_images[0])
    assert new.exit_code == old.exit_code == 0, old.output
    assert old.stdout == new.stdout and len(old.stdout.splitlines()[1].split(", ")) == 1
    assert old.stderr.count("warning: --top is deprecated, use --top-k") == 1
    assert "deprecated" not in new.stderr
    both = _run("attributes", "--weights", par_model_dir, "--top", 1, "--top-k", 2, good_images[0])
    assert both.exit_code == 2 and "give only --top-k" in both.stderr


def test_json_path_of_eval_still_writes_the_report(par_model_dir, fake_peta_root, tmp_path):
    args = ["eval", "attributes", "--root", fake_peta_root, "--weights", par_model_dir,
            "--attributes", ",".join(FIXTURE_ATTRIBUTES), "--precision", "fp32"]
    r = _run(*args, "--json", tmp_path / "old.json")
    assert r.exit_code == 0, r.output
    assert r.stderr.count("warning: --json is deprecated, use --out") == 1
    assert json.loads((tmp_path / "old.json").read_text())
    r = _run(*args)
    assert r.exit_code == 2 and "Missing option '--out'" in r.stderr


def test_train_reid_root_aliases(par_model_dir, tmp_path):
    """--peta-root and --colour-dim reach train reid as --root and --lomo-dim (the fake root
    lacks PETA's re-ID sub-datasets, so training stops at the data with a one-line error)."""
    r = _run("train", "reid", "--peta-root", tmp_path, "--colour-dim", 0, "--par", par_model_dir,
             "--out", tmp_path / "x", "--cache", tmp_path / "c", "--no-progress")
    assert r.exit_code == 2 and "Missing" not in r.stderr and "give --root" not in r.stderr
    assert "warning: --peta-root is deprecated, use --root" in r.stderr
    assert "warning: --colour-dim is deprecated, use --lomo-dim" in r.stderr


def test_model_names_a_shipped_model(par_model_dir):
    r = _run("info", "--json", "--model", "par-peta")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert len(data["attributes_model"]["attributes"]) == 35
    assert data["shipped_models"]["par-peta"]["kind"] == "attributes"
    r = _run("info", "--model", "describe-peta")  # a shipped model of another kind
    assert r.exit_code == 2 and "is a describer model" in r.stderr
    r = _run("info", "--model", "nope")
    assert r.exit_code == 2 and "available: par-peta" in r.stderr
    r = _run("info", "--model", "par-peta", "--weights", par_model_dir)
    assert r.exit_code == 2 and "exclude each other" in r.stderr
