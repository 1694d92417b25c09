"""``python -m mechscope``: the ``mechscope`` command."""

from mechscope.cli import main

main()
