"""``python -m catmner_bench.speed RECORDS_DIR DOC.md``: rewrite the generated speed block of DOC.md from the
latest speed record under RECORDS_DIR (`catmner_bench.report.speed.update_doc`)."""

from __future__ import annotations

import sys

from catmner_bench.report.speed import update_doc

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m catmner_bench.speed RECORDS_DIR DOC.md")
    print(f"wrote {update_doc(sys.argv[1], sys.argv[2])}")
