"""Faithful re-creations of the public scorers seesay's metric modes name, written for the tests from their
sources (one module per scorer; each names the file and the commit it was read at). They keep the sources'
structure and quirks on purpose; tests/test_metric_fidelity.py compares them with seesay.eval.metrics."""
