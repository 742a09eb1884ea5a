"""The `quota` command line: parse, call one library function, render."""
