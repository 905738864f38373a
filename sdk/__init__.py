"""hyperverify.sdk: the backend — data preparation, training, evaluation, enrollment, bundles.

    from hyperverify.sdk import Backend
    backend = Backend()                                # the committed default model, loaded once
    weights = backend.enroll(["me1.jpg", "me2.jpg"], "me")
    from hyperverify.runtime.user_file import write_user_file
    write_user_file("me.hvu", weights)

Evaluate any data set (pairs CSV: image a, image b, same[, fold]), with the model of your choice:

    from hyperverify.sdk import OneWayScorer, evaluate_pairs, read_pairs_csv
    result = evaluate_pairs(read_pairs_csv("pairs.csv", "photos/"), [OneWayScorer("model.pt"), "sface-cosine"])
    print(result.markdown())
"""

from hyperverify.sdk.datasets import read_pairs_csv
from hyperverify.sdk.enroll import Backend, Enrolled, enroll, load_default
from hyperverify.sdk.evaluate import evaluate_pairs
from hyperverify.sdk.oneway_product import OneWayScorer

__all__ = ["Backend", "Enrolled", "OneWayScorer", "enroll", "evaluate_pairs", "load_default", "read_pairs_csv"]
