"""Transaction and query functions of the billing contract, one module per subject."""
