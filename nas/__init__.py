"""lowformer-nas: LowFormer design-space search for a latency budget on a target device."""

from lowformer_common import __version__

__all__ = ["__version__"]
