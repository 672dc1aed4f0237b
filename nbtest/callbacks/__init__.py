"""Built-in callbacks: progress bar, per-cell timing, and more as features arrive."""

from .progress import ProgressCallback
from .timing import TimingCallback

__all__ = ["ProgressCallback", "TimingCallback"]
