"""Block and variable references (`{{ prefect.blocks.* }}`, `$ref`, `{{ prefect.variables.* }}`).

Fetching is the caller's job: `collect_references` says what to fetch, and the resolvers
here substitute the answers exactly like `resolve_block_document_references` and
`resolve_variables` upstream.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from prefect_job_operator.rendering.contracts import References, ResolvedReferences
from prefect_job_operator.rendering.errors import RenderError
from prefect_job_operator.rendering.templating import (
    BLOCK_PREFIX,
    MISSING,
    VARIABLE_PREFIX,
    PlaceholderKind,
    find_placeholders,
    get_from_dict,
    sole_placeholder,
)


def _block_address(name: str) -> tuple[str, str, str | None]:
    parts = name.replace(BLOCK_PREFIX, "").split(".", 2)
    if len(parts) < 2:
        raise RenderError(
            f"invalid block placeholder {{{{ {name} }}}}: expected "
            "prefect.blocks.<block-type-slug>.<block-document-name>"
        )
    return parts[0], parts[1], parts[2] if len(parts) > 2 else None


def _ref_id(node: dict[str, Any]) -> Any:
    ref = node.get("$ref", {})
    if not isinstance(ref, Mapping):
        raise RenderError(f"invalid block reference {{'$ref': {ref!r}}}: expected an object")
    return ref.get("block_document_id")


def scan_references(template: Any) -> References:
    """Every block, block id and variable that `template` refers to."""
    blocks: set[tuple[str, str]] = set()
    block_ids: set[str] = set()
    variables: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = _ref_id(node)
            if ref:
                block_ids.add(str(ref))
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str):
            for placeholder in find_placeholders(node):
                if placeholder.kind is PlaceholderKind.BLOCK:
                    slug, name, _ = _block_address(placeholder.name)
                    blocks.add((slug, name))
                elif placeholder.kind is PlaceholderKind.VARIABLE:
                    variables.add(placeholder.name.replace(VARIABLE_PREFIX, ""))

    walk(template)
    return References(frozenset(blocks), frozenset(block_ids), frozenset(variables))


def _walk(
    node: Any, on_string: Callable[[str], Any], on_dict: Callable[[dict[str, Any]], Any]
) -> Any:
    """Rebuild a JSON tree: strings through ``on_string``; a dict is ``on_dict``'s value
    unless that is MISSING, else its items walked."""
    if isinstance(node, dict):
        replaced = on_dict(node)
        if replaced is not MISSING:
            return replaced
        return {key: _walk(value, on_string, on_dict) for key, value in node.items()}
    if isinstance(node, list):
        return [_walk(item, on_string, on_dict) for item in node]
    if isinstance(node, str):
        return on_string(node)
    return node


def _block_value(name: str, original: str, resolved: ResolvedReferences) -> Any:
    """The data a block placeholder names (system blocks resolve to their ``value``)."""
    slug, doc_name, keypath = _block_address(name)
    if (slug, doc_name) not in resolved.blocks:
        raise RenderError(
            f"Block not found: '{doc_name}' of type '{slug}' (referenced by "
            f"{{{{ {name} }}}}). It may have been deleted; check the deployment or "
            "work pool configuration."
        )
    data = resolved.blocks[(slug, doc_name)]
    value = data
    # System blocks hold one `value`: resolve to it unless the path names it
    names_value = keypath is not None and (
        keypath == "value" or keypath.startswith(("value.", "value["))
    )
    if isinstance(data, Mapping) and len(data) == 1 and "value" in data and not names_value:
        data = value = data["value"]
    if keypath is not None:
        found = get_from_dict(data, keypath, MISSING)
        if found is MISSING:
            raise RenderError(
                f"Invalid template: {original!r}. Could not resolve the keypath "
                f"{keypath!r} in the data of block '{doc_name}' of type '{slug}'."
            )
        value = found
    return copy.deepcopy(value)


def _block_by_id(node: dict[str, Any], resolved: ResolvedReferences) -> Any:
    """A ``$ref`` object's block data, or MISSING when the dict is no reference."""
    ref = _ref_id(node)
    if not ref:
        return MISSING
    if str(ref) not in resolved.block_ids:
        raise RenderError(
            f"Block not found: ID '{ref}'. It was referenced in the deployment "
            "or work pool configuration but no longer exists."
        )
    return copy.deepcopy(resolved.block_ids[str(ref)])


def _fill_blocks(node: str, resolved: ResolvedReferences) -> Any:
    """A string's block placeholders filled; a sole placeholder keeps the value's type."""
    placeholders = find_placeholders(node)
    if not any(p.kind is PlaceholderKind.BLOCK for p in placeholders):
        return node
    only = sole_placeholder(node)
    if only is not None and only.kind is PlaceholderKind.BLOCK:
        return _block_value(only.name, node, resolved)
    result = node
    for placeholder in placeholders:
        if placeholder.kind is not PlaceholderKind.BLOCK:
            continue
        value = _block_value(placeholder.name, node, resolved)
        if isinstance(value, dict | list):
            raise RenderError(
                f"Invalid template: {node!r}. Block placeholder "
                f"{placeholder.full_match!r} resolved to a {type(value).__name__}, "
                "which cannot be used inside a longer string. Refer to a scalar "
                "attribute instead (e.g. '.value' or '.url')."
            )
        result = result.replace(placeholder.full_match, str(value))
    return result


def resolve_blocks(template: Any, resolved: ResolvedReferences) -> Any:
    """Replace `$ref` objects and block placeholders by block document data."""
    return _walk(
        template,
        lambda text: _fill_blocks(text, resolved),
        lambda node: _block_by_id(node, resolved),
    )


def resolve_variables(template: Any, variables: Mapping[str, Any]) -> Any:
    """Replace variable placeholders; a variable that does not exist becomes ""."""

    def lookup(name: str) -> Any:
        return variables.get(name.replace(VARIABLE_PREFIX, ""), MISSING)

    def fill(node: str) -> Any:
        placeholders = find_placeholders(node)
        if not any(p.kind is PlaceholderKind.VARIABLE for p in placeholders):
            return node
        only = sole_placeholder(node)
        if only is not None and only.kind is PlaceholderKind.VARIABLE:
            value = lookup(only.name)
            return "" if value is MISSING else value
        for full, name, kind in placeholders:
            if kind is PlaceholderKind.VARIABLE:
                value = lookup(name)
                node = node.replace(full, "" if value is MISSING else str(value))
        return node

    return _walk(template, fill, lambda _node: MISSING)
