"""What names a generator: a shipped one ("celeba64"), a Hugging Face Hub repo written explicitly as
"hf:owner/name", or a local path — and the one line for a name that is none of them."""

from __future__ import annotations

import re

from facegan.errors import FaceganError

HUB_PREFIX = "hf:"
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


def is_hub_id(text: str) -> bool:
    """Whether `text` names a Hub repo explicitly ("hf:..."); a malformed id is one line."""
    if not text.startswith(HUB_PREFIX):
        return False
    repo = text[len(HUB_PREFIX) :]
    if not _REPO_ID.fullmatch(repo) or ".." in repo:
        raise FaceganError(f"{text!r} is not a Hub repo id; write hf:owner/name")
    return True


def not_found(text: str) -> str:
    """The one line for a source that is neither a shipped name, a Hub id nor an existing path."""
    from facegan.sharing import pretrained

    hint = (
        f"; for the Hugging Face Hub write hf:{text}"
        if _REPO_ID.fullmatch(text)
        else "; a Hugging Face Hub repo is written hf:owner/name"
    )
    return (
        f"{text!r} is not a file or folder here, nor a shipped generator "
        f"({', '.join(pretrained.available())}){hint}"
    )
