"""The version, in a module of its own: the package's modules import it without importing the package API."""
__version__ = "0.1.0"
