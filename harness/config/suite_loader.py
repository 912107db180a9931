"""The YAML loader of suite files: PyYAML's `SafeLoader` (no tag builds a Python object) that also
refuses a key given twice in one mapping, where PyYAML keeps the last value silently: a suite is
edited by hand, and a second `name:` or `budget:` is a mistake to name, not a value to pick."""

from __future__ import annotations

from typing import Any

import yaml


class DuplicateKeys(yaml.YAMLError):
    """Every key given twice in a document, one problem each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class SuiteLoader(yaml.SafeLoader):
    """Keys are checked as each mapping is composed, before merge keys (`<<: *base`) are expanded,
    so a key that overrides a merged one is no duplicate; every duplicate is said at once."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[int, str]] = []  # (line, problem)

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        first: dict[str, int] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            line = key.start_mark.line + 1
            if key.value in first:
                twice = f"line {line}, `{key.value}`: key given twice (first on line {first[key.value]})"
                self.duplicates.append((line, f"{twice}, and only the later value would count; delete one"))
            first.setdefault(key.value, line)
        return node

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if self.duplicates:  # inner mappings are composed first: say them in the file's order
            raise DuplicateKeys([problem for _, problem in sorted(self.duplicates)])
        return node
