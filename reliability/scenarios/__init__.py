"""One module per scenario; each `run(stack, ...)` returns a Row."""
