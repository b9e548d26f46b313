"""Build the example stacks' image offline: busybox (from Debian's busybox-static) as an OCI tarball.

``python scripts/demo_image.py OUT.tar [REFERENCE]`` writes an OCI image layout whose single image
is named ``127.0.0.1:5000/reconciler/busybox:1`` (the reference ``manifests/`` use), so that
``reconcile image load OUT.tar`` makes it available with no registry and no network.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import images

DEFAULT_REFERENCE = "127.0.0.1:5000/reconciler/busybox:1"


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print(__doc__, file=sys.stderr)
        return 2
    reference = argv[1] if len(argv) == 2 else DEFAULT_REFERENCE
    with tempfile.TemporaryDirectory() as work:
        layout = images.OciLayout(Path(work) / "oci")
        images.busybox_image(layout, reference)
        layout.tarball(Path(argv[0]), only=reference)
    print(f"wrote {argv[0]} with image {reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
