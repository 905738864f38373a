"""hyperverify.sdk."""
