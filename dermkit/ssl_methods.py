"""The names of ``ssl.pretrain``'s self-supervised methods, for code outside ``ssl/``.

The registry itself (name -> Lightning module, views, config section) is :mod:`ssl.methods`. The
benchmark needs only the names (to check ``grid.inits`` and to know which inits to pretrain) and
drives ``ssl.pretrain`` through its command line, like every stage. It cannot read the registry:
stages never import each other, and nothing outside ``ssl/`` may import ``ssl.*`` (the package
stands in for Python's TLS module). Asking ``python -m ssl.pretrain`` for the names would start
torch and Lightning in a subprocess whenever a grid config is checked. So the names are kept here,
in the shared library, and :mod:`ssl.methods` refuses to load when its registry and this tuple
differ: a method added to one and not the other fails at once, with a message saying so.
"""

from __future__ import annotations

# In registration order (bench pretrains in this order); messages list them sorted.
SSL_METHODS: tuple[str, ...] = ("simclr", "dino", "byol")
