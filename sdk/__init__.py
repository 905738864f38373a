"""hyperverify.sdk: the backend — data preparation, training, evaluation, enrollment, bundles.

    from hyperverify.sdk import enroll
    weights = enroll(["me1.jpg", "me2.jpg"])          # with the committed default model
    from hyperverify.runtime.user_file import write_user_file
    write_user_file("me.hvu", weights)
"""

from hyperverify.sdk.enroll import enroll, load_default

__all__ = ["enroll", "load_default"]
