"""``python -m mechscope.cli``: the ``mechscope`` command."""

from mechscope.cli import main

main()
