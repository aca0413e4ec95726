"""Re-create indexer/assets/ucs/catids.tsv from a UCS schedule in JSON (see PROVENANCE.md beside it).

Input: `json/en.json` of the GitHub repository iluvcapra/ucs-community (UCS 8.2.1, English). Only three
columns are kept: CatID, Category, SubCategory; the Explanations and Synonyms are left out.
Usage: python scripts/vendor_ucs.py path/to/en.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "indexer" / "assets" / "ucs" / "catids.tsv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("schedule", type=Path, help="ucs-community json/en.json")
    args = parser.parse_args()
    raw = args.schedule.read_bytes()
    rows = json.loads(raw)
    versions = sorted({r["version"] for r in rows})
    lines = ["CatID\tCategory\tSubCategory"]
    for r in sorted(rows, key=lambda r: r["CatID"]):
        cells = [r["CatID"], r["Category"], r["SubCategory"]]
        if any("\t" in c or "\n" in c for c in cells):
            raise SystemExit(f"unexpected tab or newline in {cells}")
        lines.append("\t".join(cells))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print(f"{len(rows)} CatIDs (UCS {', '.join(versions)}) from sha256 {hashlib.sha256(raw).hexdigest()} -> {OUT}")


if __name__ == "__main__":
    main()
