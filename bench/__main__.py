"""``python -m bench ...`` is the ``bench`` command."""
from .cli import main

main()
