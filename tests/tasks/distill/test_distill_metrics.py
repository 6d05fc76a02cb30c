"""Distillation metrics against hand computations (verification, mean AP, pairs readers)."""

from __future__ import annotations

import numpy as np
import pytest

from mobilenets.errors import MobileNetsError
from mobilenets.tasks.distill.metrics import (
    best_threshold,
    decision_agreement,
    format_average_precision,
    format_verification,
    mean_average_precision,
    pair_distances,
    plot_roc,
    read_lfw_pairs,
    read_pairs,
    read_pairs_csv,
    verification_report,
)

# Six pairs with a tie at distance 0.2 (one same, one different pair).
DIST = np.array([0.1, 0.2, 0.2, 0.5, 0.7, 0.9])
SAME = np.array([1, 1, 0, 1, 0, 0], dtype=bool)


def embeddings_at(dist):
    """Pairs of 2-d embeddings whose distances are ``dist`` (b = a shifted along x)."""
    a = np.arange(2 * len(dist), dtype=float).reshape(-1, 2)
    b = a.copy()
    b[:, 0] += dist
    return a, b


def test_pair_distances():
    a, b = embeddings_at(DIST)
    np.testing.assert_allclose(pair_distances(a, b), DIST)
    np.testing.assert_allclose(pair_distances([[0, 0]], [[3, 4]]), [5.0])
    with pytest.raises(MobileNetsError, match="same shape"):
        pair_distances(np.zeros((2, 3)), np.zeros((3, 3)))


def test_best_threshold_by_hand():
    # thresholds: below all 3/6, 0.1 4/6, 0.2 4/6, 0.5 5/6, 0.7 4/6, 0.9 3/6
    thr, acc = best_threshold(DIST, SAME)
    assert thr == 0.5 and acc == pytest.approx(5 / 6)
    # a tie in accuracy goes to the smallest threshold: on the first three pairs 0.1 and 0.2 give 2/3
    assert best_threshold(DIST[:3], SAME[:3]) == (0.1, pytest.approx(2 / 3))


def test_verification_report_by_hand():
    a, b = embeddings_at(DIST)
    with pytest.warns(UserWarning, match="FAR 0.1 is not measurable with 3 different pairs"):
        r = verification_report(a, b, SAME, folds=2, fars=(0.5, 0.1))
    # fold 0 (pairs 0-2) tested at the threshold of pairs 3-5 (0.5): all "same", 2 of 3 right;
    # fold 1 tested at the threshold of pairs 0-2 (0.1, the tie-break): all "different", 2 of 3 right
    assert r.fold_thresholds == [0.5, 0.1]
    assert r.fold_accuracies == [pytest.approx(2 / 3)] * 2
    assert r.accuracy == pytest.approx(2 / 3) and r.accuracy_std == pytest.approx(0.0)
    assert r.threshold == 0.5
    assert (r.pairs, r.same_pairs, r.different_pairs) == (6, 3, 3)
    # ROC by hand on scores -dist: (0,0) (0,1/3) (1/3,2/3) [the tie] (1/3,1) (1,1); AUC = 1/6 + 2/3
    np.testing.assert_allclose(r.fpr, [0, 0, 1 / 3, 1 / 3, 1])
    np.testing.assert_allclose(r.tpr, [0, 1 / 3, 2 / 3, 1, 1])
    assert r.auc == pytest.approx(5 / 6)
    assert r.tar_at_far == {0.5: pytest.approx(1.0), 0.1: pytest.approx(1 / 3)}
    assert len(r.warnings) == 1 and "needs >= 10" in r.warnings[0]
    assert r.to_dict()["tar_at_far"] == {"0.5": pytest.approx(1.0), "0.1": pytest.approx(1 / 3)}
    text = format_verification({"teacher": r, "student": r})
    assert "66.67%" in text and "TAR@FAR 0.1" in text and text.count("note:") == 1


def test_verification_report_distances_and_fold_ids(recwarn):
    r = verification_report(None, None, SAME, distances=DIST, fold_ids=[0, 1, 0, 1, 0, 1], fars=(0.5,))
    assert not recwarn.list and r.warnings == []
    assert len(r.fold_accuracies) == 2
    with pytest.raises(MobileNetsError, match="both same and different"):
        verification_report(None, None, np.ones(6), distances=DIST)
    with pytest.raises(MobileNetsError, match="one 'same' flag per pair"):
        verification_report(None, None, SAME[:5], distances=DIST)


def test_decision_agreement():
    assert decision_agreement([0.1, 0.5, 0.9], 0.6, [0.2, 0.7, 0.3], 0.6) == pytest.approx(1 / 3)


def test_plot_roc(tmp_path):
    r = verification_report(None, None, SAME, distances=DIST, folds=2, fars=(0.5,))
    path = plot_roc({"a": r}, tmp_path / "roc.png")
    assert path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"


def test_mean_average_precision_by_hand():
    y = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0]])
    s = np.array([[0.9, 0.3, 0.2], [0.5, 0.1, 0.3], [0.5, 0.2, 0.4], [0.1, 0.9, 0.1]])
    out = mean_average_precision(y, s, ["smiling", "hat", "glasses"])
    # smiling: ranks 0.9 (pos) then a tie at 0.5 (pos, neg): P 1 at R 1/2, P 2/3 at R 1 -> 5/6
    # glasses: 0.4 (neg) then 0.3 (pos): P 1/2 at R 1 -> 1/2; hat has no positive: set apart
    assert out["per_attribute"] == {"smiling": pytest.approx(5 / 6), "glasses": pytest.approx(0.5)}
    assert out["no_positives"] == ["hat"]
    assert out["mean_ap"] == pytest.approx(2 / 3)  # not (5/6 + 0 + 1/2) / 3
    text = format_average_precision(out)
    assert "66.67%" in text and "hat" in text.splitlines()[-1]
    with pytest.raises(MobileNetsError, match="0/1"):
        mean_average_precision(y * 2 - 1, s)
    with pytest.raises(MobileNetsError, match="names"):
        mean_average_precision(y, s, ["a"])


def test_read_lfw_pairs(tmp_path):
    (tmp_path / "pairs.txt").write_text("2\t1\nAbe\t1\t2\nAbe\t1\tBo\t3\nCy 2 4\nBo 1 Cy 1\n")
    p = read_lfw_pairs(tmp_path / "pairs.txt")
    assert len(p) == 4
    assert p.a[0] == str(tmp_path / "Abe" / "Abe_0001.jpg") and p.b[0] == str(tmp_path / "Abe" / "Abe_0002.jpg")
    assert p.b[1] == str(tmp_path / "Bo" / "Bo_0003.jpg")
    assert p.same.tolist() == [True, False, True, False] and p.fold.tolist() == [0, 0, 1, 1]
    (tmp_path / "bad.txt").write_text("2\t1\nAbe 1 2\n")
    with pytest.raises(MobileNetsError, match="need 4 lines"):
        read_lfw_pairs(tmp_path / "bad.txt")
    with pytest.raises(FileNotFoundError, match="pairs file not found"):
        read_pairs(tmp_path / "missing.txt")


def test_read_pairs_csv(tmp_path):
    (tmp_path / "p.csv").write_text("a,b,same\nx.jpg,y.jpg,1\nx.jpg,z.jpg,No\n/abs/q.jpg,y.jpg,true\n")
    p = read_pairs(tmp_path / "p.csv")
    assert p.same.tolist() == [True, False, True]
    assert p.a == [str(tmp_path / "x.jpg"), str(tmp_path / "x.jpg"), "/abs/q.jpg"]
    (tmp_path / "bad.csv").write_text("x.jpg,y.jpg,1\nx.jpg,z.jpg,maybe\n")
    with pytest.raises(MobileNetsError, match="line 2"):
        read_pairs_csv(tmp_path / "bad.csv")
