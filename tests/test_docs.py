"""The derived docs are current: docs/syscalls.md is what the syscall table says."""
from pathlib import Path

from tft_lab.syscalls import TABLE, markdown_table

ROOT = Path(__file__).resolve().parent.parent


def test_syscall_doc_is_generated_from_the_table():
    doc = (ROOT / "docs" / "syscalls.md").read_text()
    assert markdown_table() in doc, "docs/syscalls.md is stale: run python scripts/gen_docs.py"
    for name in TABLE:
        assert f"| {name} |" in doc


def test_trace_columns_are_documented():
    doc = (ROOT / "docs" / "trace.md").read_text()
    from tft_lab.trace import COLUMNS

    for col in COLUMNS:
        assert f"`{col}`" in doc, f"trace column {col} is not documented in docs/trace.md"
