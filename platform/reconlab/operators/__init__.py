"""Forward operators: clean images -> measurements (as torch code where possible)."""
