"""Reading a policy domain's minimisation policy: YAML with the line of every key, signed or not
(edge I/O for the pure core; used by the agents and by `refmesh policy`)."""
from __future__ import annotations

from typing import Any

import yaml

from refmesh import policy as core
from refmesh import signed_policy
from refmesh.directory import TrustedDirectory
from refmesh.errors import PolicyError


def load_yaml(data: bytes, source: str) -> tuple[Any, dict[str, int]]:
    """(document, key path -> line number) of a YAML policy; PolicyError when it is not YAML
    or repeats a key (plain YAML loading would silently keep the last one)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"not UTF-8 text (byte {exc.start}); save it as UTF-8",
                          source=source) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(f"not valid YAML: {problem}; fix the file", source=source,
                          line=mark.line + 1 if mark else None) from None
    lines: dict[str, int] = {}
    if node is not None:
        _walk(node, [], lines, source)
    return doc, lines


def _walk(node: yaml.Node, parts: list, lines: dict[str, int], source: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            path = core.key_path([*parts, key])
            if key in seen:
                raise PolicyError(f"the key {key} appears twice; keep one",
                                  source=source, path=path, line=key_node.start_mark.line + 1)
            seen.add(key)
            lines[path] = key_node.start_mark.line + 1
            _walk(value_node, [*parts, key], lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[core.key_path([*parts, i])] = item.start_mark.line + 1
            _walk(item, [*parts, i], lines, source)


def policy_from_yaml(data: bytes, source: str, domain: str | None = None) -> core.Policy:
    doc, lines = load_yaml(data, source)
    if isinstance(doc, dict) and doc.get("format") == signed_policy.FORMAT:
        raise PolicyError("this is a signed policy; check the YAML it was signed from, or "
                          "verify it with `refmesh policy verify`", source=source)
    return core.parse(doc, source, lines, domain=domain)


def is_signed(data: bytes) -> bool:
    return data.lstrip().startswith(b"{")


def read_policy(data: bytes, source: str, directory: TrustedDirectory, domain: str, now: int,
                allow_unsigned: bool = False) -> tuple[core.Policy, signed_policy.Signer | None]:
    """The policy in ``data`` (file ``source``) for ``domain``, verified against the directory
    (what the agents must do before they start). With ``allow_unsigned`` (for ``explain``) a
    YAML draft is accepted too, and its signer is None."""
    if not is_signed(data):
        if not allow_unsigned:
            signed_policy.load_signed(data, directory, domain, now, source=source)  # refuses
        return policy_from_yaml(data, source, domain), None
    text, signer = signed_policy.load_signed(data, directory, domain, now, source=source)
    return policy_from_yaml(text, f"{source} (signed policy text)", signer.domain), signer
