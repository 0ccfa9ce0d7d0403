"""The HTTP edge: the Starlette app, the Schema object, guards, metrics and the explorer."""
