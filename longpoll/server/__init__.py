"""``longpoll serve``: the server product built on the library.

Everything here imports from the library (``longpoll``) and nothing there
imports from here, so an app that embeds ``json_yield`` needs none of this
package's dependencies (the ``server`` extra). The status streams and the
social graph (``streams/``) are part of the product: ``longpoll serve`` mounts
them, an embedder does not install them.
"""
