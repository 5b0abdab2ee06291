"""The held text for perplexity: Python standard library source on this machine, which the
coder models know the language of but these exact files were not picked for."""

from __future__ import annotations

import inspect

MODULES = ("argparse", "textwrap", "shlex", "configparser", "difflib")


def text() -> str:
    import importlib

    return "\n\n".join(inspect.getsource(importlib.import_module(m)) for m in MODULES)
