import numpy as np
import pytest

from personlens.eval.metrics import calibrate_thresholds, par_metrics

# 3 images x 2 attributes, worked by hand below.
LABELS = np.array([[1, 0], [1, 1], [0, 1]])
PROBS = np.array([[0.9, 0.2], [0.4, 0.8], [0.6, 0.7]])  # preds at 0.5: [1,0] [0,1] [1,1]


def test_label_based_ma_by_hand():
    m = par_metrics(PROBS, LABELS, ["a", "b"])
    # attr a: pos recall 1/2, neg recall 0/1 -> 0.25 ; attr b: pos 2/2, neg 1/1 -> 1.0
    assert m.per_attribute[0].ma == pytest.approx(25.0)
    assert m.per_attribute[1].ma == pytest.approx(100.0)
    assert m.mA == pytest.approx(62.5)


def test_instance_based_by_hand():
    m = par_metrics(PROBS, LABELS, ["a", "b"])
    # image 1: P={a} G={a} -> acc 1, prec 1, rec 1
    # image 2: P={b} G={a,b} -> acc 1/2, prec 1, rec 1/2
    # image 3: P={a,b} G={b} -> acc 1/2, prec 1/2, rec 1
    assert m.accuracy == pytest.approx(100 * 2 / 3)
    assert m.precision == pytest.approx(100 * 2.5 / 3)
    assert m.recall == pytest.approx(100 * 2.5 / 3)
    # F1 is the harmonic mean of the averaged precision and recall
    assert m.f1 == pytest.approx(100 * 2.5 / 3)


def test_thresholds_change_predictions():
    m = par_metrics(PROBS, LABELS, ["a", "b"], thresholds=np.array([0.35, 0.5]))
    # attr a now predicts all three positive: pos recall 1, neg recall 0 -> 50
    assert m.per_attribute[0].ma == pytest.approx(50.0)
    assert m.per_attribute[0].threshold == pytest.approx(0.35)


def test_perfect_and_inverted():
    y = np.array([[1, 0, 1], [0, 1, 0]])
    assert par_metrics(y.astype(float), y, list("abc")).mA == pytest.approx(100.0)
    inv = par_metrics(1.0 - y, y, list("abc"))
    assert inv.mA == pytest.approx(0.0) and inv.f1 == pytest.approx(0.0)


def test_shape_errors():
    with pytest.raises(ValueError, match="must be equal"):
        par_metrics(np.zeros((2, 3)), np.zeros((2, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="no images"):
        par_metrics(np.zeros((0, 2)), np.zeros((0, 2)), ["a", "b"])


def test_to_dict_keys_and_range_validation():
    d = par_metrics(PROBS, LABELS, ["a", "b"]).to_dict()
    assert set(d["per_attribute"]) == {"a", "b"}
    assert {"mA", "accuracy", "precision", "recall", "f1"} <= set(d)


def test_calibration_recovers_shifted_scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(400, 3))
    # scores separate the classes perfectly, but around 0.2 instead of 0.5
    probs = np.where(y == 1, 0.25, 0.15) + rng.uniform(-0.04, 0.04, size=y.shape)
    assert par_metrics(probs, y, list("abc")).mA == pytest.approx(50.0)
    th = calibrate_thresholds(probs, y, "ma")
    assert np.all((th > 0.15) & (th <= 0.25))
    assert par_metrics(probs, y, list("abc"), th).mA == pytest.approx(100.0)


def test_calibration_keeps_half_without_evidence():
    y = np.array([[1, 0], [1, 0]])
    th = calibrate_thresholds(np.array([[0.9, 0.1], [0.8, 0.2]]), y, "f1")
    assert th[0] == 0.5 and th[1] == 0.5
    with pytest.raises(ValueError, match="objective"):
        calibrate_thresholds(np.zeros((2, 2)), y, "nope")


def test_joint_calibration_does_not_lose_to_per_attribute():
    rng = np.random.default_rng(3)
    y = (rng.random((300, 6)) < [0.05, 0.1, 0.3, 0.5, 0.2, 0.6]).astype(int)
    probs = np.clip(0.35 * y + rng.normal(0.3, 0.15, y.shape), 0, 1)
    names = list("abcdef")

    def score(th):
        m = par_metrics(probs, y, names, th)
        return m.mA + m.f1

    balanced = calibrate_thresholds(probs, y, "balanced")
    joint = calibrate_thresholds(probs, y, "joint")
    assert score(joint) >= score(balanced) - 1e-9
    assert score(joint) > score(np.full(6, 0.5))


def _two_sources():
    """Source A (900 crops): positives score 0.35, negatives 0.2. Source B (100 crops, other
    cameras): positives 0.8, negatives 0.5. No one threshold fits both."""
    p = np.concatenate([np.full(100, 0.35), np.full(800, 0.2), np.full(50, 0.8), np.full(50, 0.5)])
    y = np.concatenate([np.ones(100), np.zeros(800), np.ones(50), np.zeros(50)])
    groups = ["A"] * 900 + ["B"] * 100
    return p[:, None], y[:, None], groups


@pytest.mark.parametrize("objective", ["ma", "joint"])
def test_group_balanced_calibration_lets_every_source_count(objective):
    p, y, groups = _two_sources()
    pooled = calibrate_thresholds(p, y, objective)[0]
    balanced = calibrate_thresholds(p, y, objective, groups=groups)[0]
    assert 0.2 < pooled <= 0.35          # the big source decides alone
    assert 0.5 < balanced <= 0.8         # weighed equally, the small source's cameras count
    # one group is the same as no groups
    assert calibrate_thresholds(p, y, objective, groups=["A"] * 1000)[0] == pooled


def test_group_weights_are_checked():
    from personlens.eval.metrics import group_weights

    w = group_weights(["a", "a", "a", "b"], 4)
    assert np.allclose(w, [2 / 3, 2 / 3, 2 / 3, 2]) and w.mean() == pytest.approx(1)
    with pytest.raises(ValueError, match="3 groups for 4 samples"):
        group_weights(["a", "b", "c"], 4)


def test_mean_auc_counts_ordered_pairs_and_skips_one_class_attributes():
    from personlens.eval.metrics import mean_auc

    probs = np.array([[0.1, 0.2], [0.4, 0.9], [0.35, 0.5], [0.8, 0.1]])
    labels = np.array([[0, 1], [0, 1], [1, 1], [1, 1]])   # attribute 2: positives only
    # positives 0.35 and 0.8 against negatives 0.1 and 0.4: 3 of 4 pairs in order
    assert mean_auc(probs, labels) == pytest.approx(0.75)
    assert np.isnan(mean_auc(probs[:, 1:], labels[:, 1:]))


def test_threshold_and_ranking_separates_where_scores_lie_from_how_they_rank():
    from personlens.eval.metrics import par_metrics, threshold_and_ranking

    probs = np.array([[0.1], [0.2], [0.6], [0.45]])
    labels = np.array([[0], [0], [1], [1]])
    before = threshold_and_ranking(probs, labels, ["a"], 0.5)
    after = threshold_and_ranking(probs + 0.1, labels, ["a"], 0.5)   # same order, moved up
    assert (before["mA"], after["mA"]) == (75.0, 100.0)
    assert before["mean_auc"] == after["mean_auc"] == 100.0
    assert before["f1"] == round(par_metrics(probs, labels, ["a"], 0.5).f1, 2)


def test_attribute_aucs_are_nan_where_one_class_is_missing():
    from personlens.eval.metrics import attribute_aucs

    probs = np.array([[0.9, 0.2], [0.1, 0.9], [0.8, 0.5]])
    labels = np.array([[1, 1], [0, 1], [0, 1]])
    aucs = attribute_aucs(probs, labels)
    assert aucs[0] == pytest.approx(1.0) and np.isnan(aucs[1])
