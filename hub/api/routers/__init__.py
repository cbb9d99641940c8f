"""One router per resource; `hub.api.app.create_app` includes them."""
