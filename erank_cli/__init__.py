"""The ``erank`` command line: the one package that imports the server and every adapter.

Nothing imports it, so neither the server nor an adapter pulls in another's dependencies.
"""
