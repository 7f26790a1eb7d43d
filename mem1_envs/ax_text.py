"""A page's text as the browser shows it, read from Chromium's accessibility tree.

The observer knows nothing about the page's markup: it asks Chromium for its accessibility tree
(the CDP command ``Accessibility.getFullAXTree``, as BrowserGym observes pages) and turns the
tree into text by generic rules, so the same reader works on any page:

- a ``heading`` is a line ``# {name}`` (its accessible name, which includes the text of links in it);
- every other block (paragraph, list item, table cell, a ``generic`` block, ...) is one line of its
  inline content in document order: ``StaticText`` gives its text, a ``link`` gives ``[{name}]``
  (an empty one, which shows nothing, gives nothing), a list marker gives its text, inline
  containers (``emphasis``, ``strong``, an inline ``generic``...) give their children's text;
- a ``LineBreak`` (``<br>``) ends the line;
- whitespace runs become one space, lines are stripped, empty lines are dropped;
- what the browser does not show is not in the tree or is marked ``ignored`` (``display:none``,
  ``visibility:hidden``, ``hidden``, ``aria-hidden``), and is not read; images give nothing
  (their ``alt`` text is not shown).

Which ``generic`` node is a block: Chromium keeps a block box in the tree when it holds inline
content (a paragraph of text), and elides plain inline ``<span>``\\ s; a block holding both blocks
and text is ``ignored`` and its text runs stand between the blocks. So the children of a
non-ignored block that holds text are inline, and the children of an ignored node are blocks
(text runs among them form lines of their own). Known limits: a ``<span>`` that Chromium keeps
(one with a ``title``, ``id`` or ``tabindex``) directly beside a block is read as a block; a
form field's value and the content of frames are not read; ``<pre>`` whitespace is collapsed.

:func:`ax_text` is pure (it takes the CDP reply's ``nodes``); :func:`read_ax_nodes` and
:func:`page_text` talk to a Selenium Chromium driver. Selenium is never imported here.

>>> def node(i, role, name=None, children=(), ignored=False):
...     n = {"nodeId": str(i), "role": {"value": role}, "ignored": ignored, "childIds": [str(c) for c in children]}
...     return n if name is None else {**n, "name": {"value": name}}
>>> nodes = [node(1, "RootWebArea", "doc", [2]), node(2, "none", None, [3, 4], ignored=True),
...          node(3, "heading", "Ada  Lovelace", [5]), node(5, "StaticText", "Ada  Lovelace"),
...          node(4, "paragraph", "", [6, 7, 8]), node(6, "StaticText", "Born in "),
...          node(7, "link", "London ", [9]), node(9, "StaticText", "London "), node(8, "StaticText", ".")]
>>> print(ax_text(nodes))
# Ada Lovelace
Born in [London].
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

# Roles whose content flows inside a line. A ``generic`` is inline only inside a line (see above).
INLINE_ROLES = frozenset(
    {
        "StaticText",
        "link",
        "emphasis",
        "strong",
        "code",
        "mark",
        "subscript",
        "superscript",
        "time",
        "abbr",
        "insertion",
        "deletion",
        "LineBreak",
        "ListMarker",
        "image",
        "InlineTextBox",
    }
)
# Nodes read through their own name, never their children.
_NAMED_LEAVES = frozenset({"StaticText", "ListMarker"})
# Nodes that show no text of their own (an image's alt is not visible).
_SILENT = frozenset({"image", "InlineTextBox"})


def _role(node: Mapping[str, Any]) -> str:
    return str((node.get("role") or {}).get("value", ""))


def _name(node: Mapping[str, Any]) -> str:
    return str((node.get("name") or {}).get("value", "") or "")


def collapse(text: str) -> str:
    """Whitespace runs (any Unicode whitespace) to one space, ends stripped.

    >>> collapse("  a \\n\\t b\\u00a0 c ")
    'a b c'
    """
    return " ".join(text.split())


class _Reader:
    """Walks the tree once, in document order, collecting lines."""

    def __init__(self, nodes: Mapping[str, Mapping[str, Any]]) -> None:
        self.nodes = nodes
        self.lines: list[str] = []
        self.buffer: list[str] = []

    def flush(self) -> None:
        line = collapse("".join(self.buffer))
        self.buffer = []
        if line:
            self.lines.append(line)

    def children(self, node: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
        for child_id in node.get("childIds") or ():
            child = self.nodes.get(str(child_id))
            if child is not None:
                yield child

    def holds_text(self, node: Mapping[str, Any]) -> bool:
        return any(_role(child) in INLINE_ROLES for child in self.children(node))

    def inline(self, node: Mapping[str, Any]) -> None:
        """A node inside a line: its text joins the current line."""
        role = _role(node)
        ignored = bool(node.get("ignored"))
        if role in _NAMED_LEAVES:
            if not ignored:
                self.buffer.append(_name(node))
        elif role == "link":
            name = collapse(_name(node))
            if name and not ignored:
                self.buffer.append(f"[{name}]")
        elif role == "LineBreak":
            if not ignored:
                self.flush()
        elif role in _SILENT:
            pass
        elif role == "heading" and not ignored:
            self.heading(node)
        else:  # an inline container (emphasis, an inline generic, an ignored wrapper)
            for child in self.children(node):
                self.inline(child)

    def heading(self, node: Mapping[str, Any]) -> None:
        self.flush()
        name = collapse(_name(node))
        if name:
            self.lines.append(f"# {name}")

    def block(self, node: Mapping[str, Any]) -> None:
        """A node between lines: it starts and ends a line of its own."""
        role = _role(node)
        ignored = bool(node.get("ignored"))
        if role in INLINE_ROLES:  # a text run among blocks (an ignored block's mixed content)
            self.inline(node)
            return
        self.flush()
        if role == "heading" and not ignored:
            self.heading(node)
            return
        if not ignored and self.holds_text(node):
            for child in self.children(node):  # a block of text: one line
                self.inline(child)
        else:  # a block of blocks, or an ignored wrapper of mixed content
            for child in self.children(node):
                self.block(child)
        self.flush()


def ax_text(nodes: Sequence[Mapping[str, Any]]) -> str:
    """The text of a page from the ``nodes`` of a CDP ``Accessibility.getFullAXTree`` reply.

    The first node without a parent in ``nodes`` (the ``RootWebArea``) is the root; see the
    module docstring for the rules. An empty tree gives ``""``.

    >>> ax_text([])
    ''
    """
    by_id = {str(node["nodeId"]): node for node in nodes}
    roots = [node for node in nodes if node.get("parentId") is None]
    if not roots:
        return ""
    reader = _Reader(by_id)
    reader.block(roots[0])
    reader.flush()
    return "\n".join(reader.lines)


def read_ax_nodes(driver: Any) -> list[dict[str, Any]]:
    """The accessibility tree of the page ``driver`` (a Selenium Chromium driver) shows."""
    return driver.execute_cdp_cmd("Accessibility.getFullAXTree", {})["nodes"]


def page_text(driver: Any) -> str:
    """The text of the page the browser shows (:func:`ax_text` of its accessibility tree)."""
    return ax_text(read_ax_nodes(driver))


def find_links(
    nodes: Sequence[Mapping[str, Any]], name: str, key: Callable[[str], str] = collapse
) -> list[int]:
    """The DOM node ids (``backendDOMNodeId``) of visible links whose accessible name is ``name``.

    Names are compared through ``key`` (by default as the observer writes them: whitespace
    collapsed; an env may pass its own label rule, e.g. case-folding); ids in document order.

    >>> find_links([{"nodeId": "7", "role": {"value": "link"}, "name": {"value": " London "},
    ...              "ignored": False, "backendDOMNodeId": 12}], "London")
    [12]
    """
    wanted = key(name)
    if not wanted:  # a link with an empty name shows nothing: nobody can name it
        return []
    return [
        int(node["backendDOMNodeId"])
        for node in _in_document_order(nodes)
        if _role(node) == "link"
        and not node.get("ignored")
        and key(_name(node)) == wanted
        and node.get("backendDOMNodeId") is not None
    ]


def _in_document_order(nodes: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The nodes by a depth-first walk from the root (the reply's own order is not tree order)."""
    by_id = {str(node["nodeId"]): node for node in nodes}
    roots = [node for node in nodes if node.get("parentId") is None]
    order: list[Mapping[str, Any]] = []
    stack = list(reversed(roots[:1]))
    while stack:
        node = stack.pop()
        order.append(node)
        children = [by_id[str(c)] for c in node.get("childIds") or () if str(c) in by_id]
        stack.extend(reversed(children))
    return order
