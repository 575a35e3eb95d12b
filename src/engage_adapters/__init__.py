"""engage_adapters: the outside world behind engage_core's ports.

``memory`` holds public in-memory fakes of every port; the other modules hold
the real adapters and ``bootstrap`` the one composition root.
"""
