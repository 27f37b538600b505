"""Regenerate the derived documentation: docs/syscalls.md from the syscall table."""
from pathlib import Path

from tft_lab.syscalls import markdown_table

HEADER = """# The syscall table

Generated from `tft_lab/syscalls.py` by `python scripts/gen_docs.py`; do not
edit by hand (a test checks it is current). What each class means is in
DESIGN.md §2 and the module's docstring; "trapped: no" calls run natively on
both replicas (their effect is local and identical given identical inputs).
Every other syscall is not trapped by the replicating policies either; `tft
trace` traps them all.

"""


def main() -> None:
    out = Path(__file__).resolve().parent.parent / "docs" / "syscalls.md"
    out.write_text(HEADER + markdown_table() + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
