"""The lowest layer: what every package of the project shares and nothing of the project imports.

- :mod:`common.errors`: the exceptions a user can cause (printed without a traceback);
- :mod:`common.io`: atomic writes, the memoised SHA-256 check, the home folder;
- :mod:`common.process`: worker processes that end with their parent.
"""
