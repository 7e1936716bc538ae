"""Renders the error table of docs/api.md ("Errors") from the code's own tables.

One row per `error.code` the API sends (`ErrorCode` in router/api/errors.py), with every status
and OpenAI `type` its rules (`ErrorKind`) answer with, when it is sent, its `param` when every
rule names the same one, and the headers it carries. A unit test fails when the page differs
from this output. After changing an error:

    .venv/bin/python scripts/render_error_table.py --write    # rewrite the table in docs/api.md
    .venv/bin/python scripts/render_error_table.py --check    # exit 1 if the page is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from any directory

from router.api.errors import ErrorCode, ErrorKind  # noqa: E402

PAGE = ROOT / "docs" / "api.md"
START, END = "<!-- error-table:start -->", "<!-- error-table:end -->"
HEADER = ["| status | code | type | when |", "| --- | --- | --- | --- |"]
OTHER_STATUS = "other"  # a rule without a status of its own sends the HTTP error's


def sent_codes() -> list[ErrorCode]:
    """The codes some rule sends, in the order of `ErrorCode`."""
    used = {kind.spec.code for kind in ErrorKind}
    return [code for code in ErrorCode if code in used]


def _row(code: ErrorCode) -> tuple[int, str]:
    specs = [kind.spec for kind in ErrorKind if kind.spec.code == code]
    statuses = sorted({s.status for s in specs if s.status is not None})
    status_cell = ", ".join(str(s) for s in statuses) or OTHER_STATUS
    types = sorted({s.type for s in specs}, key=lambda t: min(
        s.status or 999 for s in specs if s.type == t))
    headers = sorted({f"`{name}: {value}`" for s in specs for name, value in s.headers.items()}
                     | ({"`Retry-After`"} if any(s.retry_after for s in specs) else set()))
    params = {s.param for s in specs}
    param = next(iter(params)) if len(params) == 1 else None
    when = (code.when + (f" (`param: {param}`)" if param else "")
            + (f"; sent with {', '.join(headers)}" if headers else ""))
    row = f"| {status_cell} | `{code.value}` | {', '.join(types)} | {when} |"
    return (statuses[0] if statuses else 999), row


def render_rows() -> list[str]:
    """The table, header included, ordered by status (then as `ErrorCode` lists the codes)."""
    rows = [_row(code) for code in sent_codes()]
    return HEADER + [row for _, row in sorted(rows, key=lambda pair: pair[0])]


def rewritten(page: str) -> str:
    """`page` with the lines between the markers replaced by the rendered table."""
    lines = page.splitlines()
    start, end = lines.index(START), lines.index(END)
    return "\n".join(lines[:start + 1] + render_rows() + lines[end:]) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the table in docs/api.md")
    mode.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is stale")
    args = parser.parse_args()
    page = PAGE.read_text()
    expected = rewritten(page)
    if args.write:
        PAGE.write_text(expected)
        return 0
    if page != expected:
        print(f"{PAGE.relative_to(ROOT)}: the error table is stale; run "
              "scripts/render_error_table.py --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
