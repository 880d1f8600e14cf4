"""Tab builders: layout and wiring only; the work happens in `app.handlers`."""
