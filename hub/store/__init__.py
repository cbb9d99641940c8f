"""The hub's database: models (`hub.store.models`), engines and migrations (`hub.store.session`)."""
