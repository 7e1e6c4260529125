"""lowformer-nas: LowFormer design-space search for a latency budget on a target device."""

__version__ = "0.1.0"
