"""wearjax: JAX models of human physiology from wearable sensors."""

__version__ = "0.1.0"
