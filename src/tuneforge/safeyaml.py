"""PyYAML's safe loader with bounds, for config files and overrides.

It refuses duplicate keys (PyYAML silently keeps the last), nesting deeper than MAX_YAML_DEPTH, recursive
aliases, aliases that expand past MAX_YAML_VALUES values and numbers of more than MAX_NUMBER_CHARS digits:
a config file is a few KB, and a "billion laughs" document must cost as little as its text.
"""
from __future__ import annotations

from typing import Any

import yaml

from .errors import clip, show

MAX_YAML_DEPTH = 32           # nesting levels (a config uses 3); PyYAML's composer recurses per level
MAX_YAML_VALUES = 20_000      # values once aliases are expanded: a "billion laughs" document stops here
MAX_NUMBER_CHARS = 100        # digits of one number (Python refuses to parse ints past 4,300 digits)


class YamlRefused(Exception):
    """YAML that parses but is refused: ambiguous (duplicate keys) or too large once expanded."""

    def __init__(self, mark: Any, problem: str):
        super().__init__(problem)
        self.line, self.problem = (mark.line + 1 if mark else None), problem


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys (PyYAML silently keeps the last), nesting deeper
    than MAX_YAML_DEPTH, recursive aliases, and aliases that expand past MAX_YAML_VALUES values.

    Sizes are counted on the composed node graph, where an alias is a shared node: the expanded size
    is summed, never built, so a billion-laughs document costs as little as its text."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> values it stands for with aliases expanded

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._sizes:  # still being composed
                raise YamlRefused(event.start_mark, f"alias *{clip(event.anchor)} refers to the value it is "
                                   "inside (a recursive structure); write the values out")
            return super().compose_node(parent, index)
        if self._depth >= MAX_YAML_DEPTH:
            raise YamlRefused(self.peek_event().start_mark, f"nested deeper than {MAX_YAML_DEPTH} levels")
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._sizes[id(node)] = size = self._expanded(node)
        if size > MAX_YAML_VALUES:
            raise YamlRefused(node.start_mark, f"more than {MAX_YAML_VALUES:,} values once aliases are "
                               "expanded; a config needs far fewer (write lists out, or shorten them)")
        if isinstance(node, yaml.MappingNode):
            _check_duplicate_keys(node)
        return node

    def _expanded(self, node: Any) -> int:
        if isinstance(node, yaml.ScalarNode):
            return 1
        if isinstance(node, yaml.SequenceNode):
            return 1 + sum(self._sizes[id(child)] for child in node.value)
        return 1 + sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)

    def construct_yaml_int(self, node: Any) -> Any:
        if len(node.value) > MAX_NUMBER_CHARS:
            raise YamlRefused(node.start_mark, f"a number of {len(node.value):,} digits; no setting needs one")
        return super().construct_yaml_int(node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _check_duplicate_keys(node: Any) -> None:
    seen: dict[tuple[str, str], int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":  # `<<:` may repeat keys
            continue
        if (key.tag, key.value) in seen:
            raise YamlRefused(key.start_mark, f"duplicate key {show(key.value)} (also on line "
                               f"{seen[key.tag, key.value]}); YAML would silently keep the last one: keep one")
        seen[key.tag, key.value] = key.start_mark.line + 1


def safe_load(text: str) -> Any:
    """yaml.safe_load under the bounds above; raises yaml.YAMLError or YamlRefused."""
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
