"""``longpoll serve``: the server product built on the library.

Everything here imports from the library (``longpoll``, ``longpoll.streams``)
and nothing there imports from here, so an app that embeds ``json_yield``
needs none of this package's dependencies (the ``server`` extra).
"""
