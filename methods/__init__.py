"""Built-in methods, one module each; each registers itself with ``METHODS.register``."""
