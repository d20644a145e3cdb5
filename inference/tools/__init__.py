"""Client-side tools: ``loglog loadgen`` (:mod:`.loadgen`, its HTTP clients in
:mod:`.loadclient`) and ``loglog profile`` (:mod:`.profile`)."""
