"""The engine: model adapters (:mod:`.adapters`), loading and input processing, the attention tap on sdpa
(:mod:`.tap`), the logit lens (:mod:`.lens`), input variants for branches (:mod:`.variants`), prefill
passes and the KV cache API (:mod:`.prefill`) and the decode loop (:mod:`.decoding`). Methods
(:mod:`seesay.methods`) build on it."""
