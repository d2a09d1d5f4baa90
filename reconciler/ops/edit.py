"""`edit KIND/NAME`: a resource as `get -o yaml` shows it, for a person to change, and the changed text
applied as `apply` would, or the error to show them with it.

Called by the CLI's ``edit`` (``cli/resources.py``), which runs the editor, and by the HTTP API's edit
routes (``api/edit.py``, for a remote CLI's): ``document`` gives the text to open, ``apply_edit`` reads
what was saved back, and on a ``ManifestError`` (or a refusal of the store) ``with_error`` gives the
text to reopen, the saved text with the error on top as comments; on a ``Conflict`` because the
resource changed meanwhile (its ``generation``), the CLI reopens the current version instead.
"""

from __future__ import annotations

from typing import NamedTuple

from .. import views
from ..errors import Conflict, ManifestError, UsageError
from ..kinds import DEFAULT_NAMESPACE, Kind, object_ref
from .tokens import author

HEADER = ("# Edit the object below and save; lines beginning with '#' are ignored, and an empty file\n"
          "# cancels the edit. If it cannot be applied, this file is reopened with the error.\n")


class Edited(NamedTuple):
    ref: str  # job/hello, as `apply` prints it
    outcome: str | None  # configured | unchanged; None: cancelled (``message`` says why)
    message: str = ""


def document(store, kind: Kind, name: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """The text to edit: the header, then the resource as `get -o yaml` shows it (one document)."""
    from .resources import get_resources

    if kind is Kind.SECRET:  # `get` shows a Secret's values as their sizes: saving that back would lose them
        raise UsageError(f"edit secret/{name}: a Secret's values are never shown, so it cannot be edited here; "
                         "change its manifest and `brokerctl apply -f FILE`")
    [obj] = get_resources(store, kind, name, None, namespace)
    return HEADER + views.dump(obj, "yaml")


def with_error(edited: str, error: str) -> str:
    """The text to reopen after ``error``: the header, the error as comments, then what was saved (its
    own leading comments, an earlier header and error, left out)."""
    lines = edited.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    problem = "".join(f"# {line}\n" if line else "#\n" for line in error.splitlines())
    return HEADER + "#\n# The edit could not be applied:\n" + problem + "#\n" + "".join(lines)


def generation(text: str) -> int | None:
    """The ``metadata.generation`` of a text ``document`` gave (None: none can be read)."""
    import yaml

    try:
        found = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    meta = found.get("metadata") if isinstance(found, dict) else None
    return meta.get("generation") if isinstance(meta, dict) else None


def apply_edit(store, kind: Kind, name: str, namespace: str, original: str, edited: str, source: str,
               by: str | None = None) -> Edited:
    """Apply the saved text ``edited`` (read from ``source``, named in errors with line numbers) to the
    resource ``original`` showed. Unchanged (comments aside) or empty: cancelled. A document that is
    invalid, is not exactly one, or names another resource: ``ManifestError``; a resource whose spec
    changed since ``original`` was read (its generation moved on: someone else applied meanwhile, which
    the edit would undo): ``Conflict``; the store's refusals (a Job's template, a namespace's runAs)
    raise as in `apply`. ``by``: who edits (a token's user; None: the local CLI)."""
    import yaml

    from ..spec import manifests

    ref = object_ref(kind, namespace if kind.namespaced else "", name)
    try:
        saved = yaml.safe_load(edited)
    except yaml.YAMLError:
        saved = ...  # not YAML: the loader below says where
    if saved is None:
        return Edited(ref, None, "Edit cancelled, saved file was empty.")
    if saved == yaml.safe_load(original):
        return Edited(ref, None, "Edit cancelled, no changes made.")
    loaded = manifests.load_text(edited, source, namespace)
    if len(loaded) != 1:
        raise ManifestError([f"{source}: {len(loaded)} documents; `edit` changes the one object it opened "
                             f"({ref})"])
    item = loaded[0]
    res = item.resource
    if res.key != (kind, namespace if kind.namespaced else "", name):
        raise ManifestError([f"{source}: document 1 is {object_ref(res.kind, res.namespace, res.metadata.name)}, "
                             f"not {ref}: `edit` changes the object it opened; to make another, save it to a file "
                             "and `brokerctl apply -f FILE`"])
    _check_unchanged_since(store, kind, name, namespace, ref, generation(original))
    [(_, outcome)] = store.apply([res], where=[f"{source}: document 1 ({res.kind}/{res.metadata.name})"],
                                 by=author(by))
    return Edited(ref, outcome)


def _check_unchanged_since(store, kind: Kind, name: str, namespace: str, ref: str, started: int | None) -> None:
    """``Conflict`` when the resource's generation is no longer the one the edit began from (a change of
    its status alone leaves the generation, and the edit, alone). Checked just before the write: a change
    in between is not seen, as with two `apply`s."""
    from .resources import get_resources

    [current] = get_resources(store, kind, name, None, namespace)
    now = current["metadata"].get("generation")
    if started is not None and now != started:
        raise Conflict(f"{ref} was changed while it was being edited (generation {started} then, {now} now); "
                       "nothing was applied: make the change again on the current version")
