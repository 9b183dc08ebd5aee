"""The local end-to-end demo: the operator's whole loop on one machine (`make demo`)."""
