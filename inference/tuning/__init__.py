"""The host tuned for serving: the engine's own core (:mod:`.affinity`), the GIL's switch
interval (:mod:`.gil`) and the allocator giving memory back (:mod:`.memory`)."""
