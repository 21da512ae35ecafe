"""Where an actor instance lives: one module per kind of host, registered by name.

``base.py`` is the contract supervision relies on; ``registry.py`` maps an
``isolation`` value to its host; ``inline.py`` and ``process.py`` (with ``child.py``
and ``framing.py``) are the hosts; ``threads.py`` is the op thread pool they share;
``ops.py`` resolves an ask to a method of the actor class.
"""
