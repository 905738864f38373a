"""hyperverify.sample_app."""
