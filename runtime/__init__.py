"""hyperverify.runtime: the bottom layer; what ships in an app (no training code, no torch)."""
