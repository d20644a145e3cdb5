"""stack: the ``loglog`` command line and the embedded stack that ``loglog up`` runs."""
