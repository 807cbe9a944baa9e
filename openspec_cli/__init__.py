"""openspec: copy, stream and hash very large files, safely and fast."""

__version__ = "0.1.0"
