"""Put an experiment's ``results.md`` into README.md, between the ``<!-- results:begin -->`` and
``<!-- results:end -->`` markers (the README's "Results" section is generated, never edited by hand).

    python scripts/readme_results.py runs/experiment/results.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("results", help="results.md written by cldyn experiment")
    p.add_argument("--readme", default=str(Path(__file__).resolve().parents[1] / "README.md"))
    args = p.parse_args()
    readme = Path(args.readme)
    text = readme.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise SystemExit(f"{readme}: needs exactly one {BEGIN} ... {END} block")
    body = Path(args.results).read_text().strip()
    if body.startswith("## "):  # the README's own "## Results" heading stands above the block
        body = body.split("\n", 1)[1].strip()
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    readme.write_text(f"{head}{BEGIN}\n{body}\n{END}{tail}")
    print(f"{readme}: results block replaced ({len(body.splitlines())} lines from {args.results})")


if __name__ == "__main__":
    main()
