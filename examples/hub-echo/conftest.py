"""Lets the example's tests import ``hub_echo`` from the hub's checkout without installing it.

In your own plugin, ``pip install -e '.[test]'`` does this, and this file is not needed.
"""

import sys
from pathlib import Path

try:
    import hub_echo  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).parent))
