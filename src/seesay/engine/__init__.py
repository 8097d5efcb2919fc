"""The engine: model adapters (:mod:`.adapters`), loading and input processing, the attention tap on sdpa
(:mod:`.tap`), the logit lens (:mod:`.lens`), input variants for branches (:mod:`.variants`) and the
decode loop with its KV caches (:mod:`.decoding`). Methods (:mod:`seesay.methods`) build on it."""
