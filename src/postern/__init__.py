"""postern: a self-hosted mail platform."""

__version__ = "0.1.0"
