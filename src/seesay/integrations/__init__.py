"""seesay inside other harnesses: :mod:`seesay.integrations.lmms` is lmms-eval's ``--model seesay``."""
