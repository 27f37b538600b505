"""The everyday-programs corpus (issue 7): workloads, harness, known failures, report."""
