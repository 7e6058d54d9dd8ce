"""personlens: understand people in camera footage, locally."""
__version__ = "0.1.0"
