"""ERP connectors behind one interface, found through entry points."""
