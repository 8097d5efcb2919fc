"""Screenshot a seesay report in headless Chromium (the page as a user's browser shows it), after the
same checks as the browser test: no console error, no request but the file, every figure decoded. The
picture stacks the top of each section's own screenshot (at most ``--section-height`` pixels of each).

    python scripts/report_screenshot.py demo.html docs/report.png
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from PIL import Image

from seesay.testing.browser import check_page


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("html", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--section-height", type=int, default=760, help="pixels of each section shown")
    ap.add_argument("--width", type=int, default=1000, help="the picture's width")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        seen = check_page(args.html, shots=Path(tmp))
        problems = seen.console_errors + seen.page_errors + seen.network + seen.broken_images
        if problems:
            raise SystemExit(f"the page is not clean: {problems}")
        parts = []
        for path in seen.sections.values():
            part = Image.open(path).convert("RGB")
            parts.append(part.crop((0, 0, part.width, min(part.height, args.section_height))))
    gap = 12
    width = max(p.width for p in parts)
    sheet = Image.new("RGB", (width, sum(p.height for p in parts) + gap * (len(parts) - 1)), (246, 247, 249))
    y = 0
    for part in parts:
        sheet.paste(part, (0, y))
        y += part.height + gap
    sheet = sheet.resize((args.width, round(sheet.height * args.width / width)), Image.Resampling.LANCZOS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(
        f"{args.out}: {sheet.size[0]}x{sheet.size[1]}; {seen.images} figures; sections {list(seen.sections)}"
    )


if __name__ == "__main__":
    main()
