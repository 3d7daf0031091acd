"""Built-in protocols, one module each; each registers itself with ``PROTOCOLS.register``."""
