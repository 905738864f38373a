import numpy as np

from hyperverify.sdk.metrics import best_threshold, roc_summary, ten_fold_accuracy, threshold_at_far


def test_threshold_separates_separable_scores() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    same = np.array([0, 0, 0, 1, 1, 1], bool)
    t = best_threshold(scores, same)
    assert 0.3 < t < 0.7


def test_ten_fold_never_tunes_on_the_test_fold() -> None:
    """Fold 0 alone is shifted: a threshold tuned on it would score 100 %, the protocol's does not."""
    rng = np.random.default_rng(0)
    same = np.tile(np.r_[np.ones(50, bool), np.zeros(50, bool)], 10)
    fold = np.repeat(np.arange(10), 100)
    scores = np.where(same, 1.0, 0.0) + rng.normal(0, 0.01, same.size)
    scores[fold == 0] += 5.0
    accuracies, thresholds = ten_fold_accuracy(scores, same, fold)
    assert accuracies[0] == 0.5 and all(a == 1.0 for a in accuracies[1:])
    assert thresholds[0] < 1.0


def test_roc_summary_of_a_perfect_and_a_random_scorer() -> None:
    same = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    perfect = roc_summary(same.astype(float), same)
    assert perfect["auc"] == 1.0 and perfect["eer"] == 0.0 and perfect["tar@far=0.001"] == 1.0
    rng = np.random.default_rng(1)
    noise = roc_summary(rng.random(1000), same)
    assert 0.4 < noise["auc"] < 0.6 and 0.4 < noise["eer"] < 0.6


def test_threshold_at_far_counts_false_accepts() -> None:
    impostors = np.arange(1000, dtype=float)
    t = threshold_at_far(impostors, 0.01)
    assert (impostors >= t).sum() == 10
    assert (impostors >= threshold_at_far(impostors, 0.0)).sum() == 0


def test_held_out_groups_never_share_thresholds() -> None:
    """Two models, two groups of folds: group B's scores are shifted, and only B's own folds may set
    B's thresholds, so both groups stay perfect."""
    from hyperverify.sdk.metrics import held_out_fold_accuracy

    same = np.tile(np.r_[np.ones(50, bool), np.zeros(50, bool)], 4)
    fold = np.repeat(np.arange(4), 100)
    scores = np.where(same, 1.0, 0.0) + np.where(fold >= 2, 10.0, 0.0)
    assert held_out_fold_accuracy(scores, same, fold, [[0, 1], [2, 3]]) == [1.0] * 4
    assert min(ten_fold_accuracy(scores, same, fold)[0]) < 1.0


def test_fold_spread_is_lfws_standard_error() -> None:
    """LFW reports mean ± standard error: s / sqrt(n) with the sample std (n - 1), not the population std."""
    from hyperverify.sdk.metrics import fold_spread

    folds = [0.90, 0.92, 0.94, 0.96, 0.98, 0.90, 0.92, 0.94, 0.96, 0.98]
    spread = fold_spread(folds)
    sample_std = float(np.sqrt(sum((f - 0.94) ** 2 for f in folds) / 9))
    assert abs(spread["mean"] - 0.94) < 1e-12
    assert abs(spread["std"] - sample_std) < 1e-12
    assert abs(spread["se"] - sample_std / np.sqrt(10)) < 1e-12
    assert spread["std"] > float(np.std(folds))  # the population std would be smaller
