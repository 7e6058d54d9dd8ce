"""Self-training on unlabelled crops (``train.pseudo``): the soft-target loss, the teacher's
targets and its checks, and a student that trains on both labelled and unlabelled crops."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from crops_testlib import tiny_par_training, write_crops
from personlens.data.images import load_image
from personlens.train.features import build_cache, cache_dir_for, load_cache, pick_views
from personlens.train.losses import imbalance_weights
from personlens.train.par import train_par
from personlens.train.pseudo import (PseudoLabelError, check_teacher, load_teacher, soft_target_loss,
                                     teacher_targets, unlabelled_images)
from personlens.train.unseen import fold_model

NAMES = ["personalMale", "carryingBackpack", "accessoryHat"]


def test_soft_target_loss_is_weighted_bce_and_minimal_at_the_targets():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-0.3, 0.0, 3.0]], requires_grad=True)
    pos_rate = torch.tensor([0.5, 0.1, 0.9])
    hard = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    want = (imbalance_weights(hard, pos_rate)
            * torch.nn.functional.binary_cross_entropy_with_logits(logits, hard, reduction="none")).sum(1).mean()
    torch.testing.assert_close(soft_target_loss(logits, hard, pos_rate), want)
    # soft targets: the gradient vanishes where the student already gives the teacher's probability
    targets = torch.sigmoid(logits.detach())
    soft_target_loss(logits, targets, pos_rate).backward()
    assert logits.grad.abs().max() < 1e-6
    with pytest.raises(ValueError, match="differ"):
        soft_target_loss(logits, targets[:1], pos_rate)


def test_pick_views_reads_clean_rows_and_augmented_rows_apart():
    feats = np.arange(8, dtype=np.float16).reshape(4, 2, 1, 1, 1)        # 10 * row + view / 10
    aug = 100 + np.arange(6, dtype=np.float16).reshape(2, 3, 1, 1, 1)
    h = pick_views(feats, np.array([3, 0, 2]), aug, np.array([1, 0, 1]), np.array([1, 0, 4]))
    assert h[:, 0, 0, 0].tolist() == [7, 0, 105]


def test_unlabelled_images_are_found_recursively_and_an_empty_folder_is_refused(tmp_path):
    a = write_crops(tmp_path / "u" / "cam1", 2)
    b = write_crops(tmp_path / "u" / "cam2", 1, prefix="x")
    (tmp_path / "u" / "notes.txt").write_text("not an image")
    assert unlabelled_images(tmp_path / "u") == sorted(a + b)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PseudoLabelError, match="holds 0 images"):
        unlabelled_images(tmp_path / "empty")
    with pytest.raises(PseudoLabelError, match="is not a folder"):
        unlabelled_images(tmp_path / "missing")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A teacher trained on 8 labelled crops; 6 unlabelled crops of other 'cameras'."""
    root = tmp_path_factory.mktemp("pseudo")
    tr, va, cfg = tiny_par_training(root, NAMES, epochs=2)
    teacher, _ = train_par(tr, va, tr.paths + va.paths, cfg, out_dir=root / "teacher", log=lambda *_: None)
    unlabelled = write_crops(root / "unlabelled", 6, start=50, prefix="u")
    return tr, va, cfg, root, teacher, unlabelled


def test_teacher_targets_are_its_flip_averaged_predictions(trained):
    *_, root, teacher, unlabelled = trained
    enc = teacher.encoder
    feats, _ = load_cache(build_cache(enc, unlabelled, 14, cache_dir_for(root / "u-cache", enc, 14)))
    got = teacher_targets(teacher, feats, batch=4)
    pre = enc.preprocess
    with torch.inference_mode():
        views = [torch.stack([pre(load_image(p), flip=f) for p in unlabelled]) for f in (False, True)]
        want = sum(torch.sigmoid(teacher(v)) for v in views) / 2
    assert got.shape == (6, len(NAMES))
    np.testing.assert_allclose(got, want.numpy(), atol=1e-2)   # the cache is float16


def test_a_teacher_that_cannot_label_the_students_cache_is_refused(trained):
    *_, root, teacher, _ = trained
    enc = teacher.encoder
    pre = enc.preprocess.to_dict()
    check_teacher(teacher, enc.name, 14, pre, NAMES)               # the student it was built for
    with pytest.raises(PseudoLabelError, match="share the student's frozen lower stages"):
        check_teacher(teacher, enc.name, 8, pre, NAMES)
    with pytest.raises(PseudoLabelError, match="share the student's frozen lower stages"):
        check_teacher(teacher, "efficientnet_lite1", 14, pre, NAMES)
    with pytest.raises(PseudoLabelError, match="predicts 3 attributes"):
        check_teacher(teacher, enc.name, 14, pre, NAMES[:2])
    with pytest.raises(PseudoLabelError, match="not an attribute model"):
        load_teacher(root / "unlabelled", enc, 14, NAMES)
    with pytest.raises(PseudoLabelError, match="fold grid-mit: the teacher must be the fold's own model"):
        fold_model(root, "grid-mit")
    assert fold_model(root, "teacher") == root / "teacher"


def test_a_student_trains_on_labelled_and_unlabelled_crops(trained):
    tr, va, cfg, root, teacher, unlabelled = trained
    scfg = replace(cfg, unlabelled=str(root / "unlabelled"), teacher=str(root / "teacher"),
                   unlabelled_ratio=1.0, augment_views=1)
    said = []
    student, summary = train_par(tr, va, tr.paths + va.paths, scfg, out_dir=root / "student", log=said.append)
    assert summary["unlabelled_images"] == 6 and len(summary["history"]) == 2
    assert any(m.startswith("6 unlabelled crops from") for m in said)
    assert all(np.isfinite(h["loss"]) for h in summary["history"])
    # the unlabelled term is in the loss: another weight trains another model
    other, _ = train_par(tr, va, tr.paths + va.paths, replace(scfg, unlabelled_weight=0.0),
                         log=lambda *_: None)
    w = "head.classifier.weight"
    state, other_state = student.trainable_state_dict(), other.trainable_state_dict()
    key = w if w in state else next(k for k in state if k.startswith("head.") and k.endswith("weight"))
    assert not torch.allclose(state[key], other_state[key])
    with pytest.raises(PseudoLabelError, match="need a teacher"):
        train_par(tr, va, tr.paths + va.paths, replace(scfg, teacher=""), log=lambda *_: None)


def test_a_retrained_teacher_does_not_resume_the_students_run(trained, tmp_path):
    import shutil

    from personlens.train.checkpoint import CHECKPOINT_FILE

    tr, va, cfg, root, _, _ = trained
    teacher = tmp_path / "teacher"
    shutil.copytree(root / "teacher", teacher)
    scfg = replace(cfg, unlabelled=str(root / "unlabelled"), teacher=str(teacher), epochs=3)

    class Killed(RuntimeError):
        pass

    def killed_after_epoch_1(msg):
        if msg.startswith("epoch 2:"):
            raise Killed

    with pytest.raises(Killed):
        train_par(tr, va, tr.paths + va.paths, scfg, out_dir=tmp_path / "s", log=killed_after_epoch_1)
    assert (tmp_path / "s" / CHECKPOINT_FILE).is_file()
    weights = teacher / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1                                      # the teacher's weights changed in place
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="other settings"):
        train_par(tr, va, tr.paths + va.paths, scfg, out_dir=tmp_path / "s", log=lambda *_: None,
                  resume=True)
