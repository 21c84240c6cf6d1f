"""The Stripe gateway: the only package of the service that imports ``stripe``."""
