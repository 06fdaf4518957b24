"""A griffe extension: the Sphinx roles of the docstrings (``:func:`fit```, ``:class:`~a.B```)
rendered as code by mkdocstrings, and reST literal-block markers (``Example::``) as plain
colons, so docstrings read the same in ``help()`` and on the site."""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:class|func|meth|data|mod|attr|exc|obj):`(~?)\.?([^`]+)`")
LITERAL = re.compile(r"(\S)::$", re.M)


def _role(match: re.Match) -> str:
    tilde, target = match.groups()
    if "<" in target:  # :func:`text <target>`
        target = target.split("<", 1)[0].strip()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            text = ROLE.sub(_role, obj.docstring.value)
            obj.docstring.value = LITERAL.sub(r"\1:", text)
