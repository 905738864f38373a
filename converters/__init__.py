"""hyperverify.converters."""
