"""hyperverify.sdk: the backend — data preparation, training, evaluation, enrollment, bundles.

    from hyperverify.sdk import Backend
    backend = Backend()                                # the committed default model, loaded once
    weights = backend.enroll(["me1.jpg", "me2.jpg"], "me")
    from hyperverify.runtime.user_file import write_user_file
    write_user_file("me.hvu", weights)
"""

from hyperverify.sdk.enroll import Backend, Enrolled, enroll, load_default

__all__ = ["Backend", "Enrolled", "enroll", "load_default"]
