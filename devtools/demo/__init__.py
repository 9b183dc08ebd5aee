"""`make demo`: the operator's whole loop on one machine, on a simulated clock (docs/demo.md)."""
