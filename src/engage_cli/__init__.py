"""engage_cli: the ``engage`` command for operators."""
