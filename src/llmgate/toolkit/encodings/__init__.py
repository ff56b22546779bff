"""OpenAI's BPE encodings, shipped with the package so that exact counting needs no download.

The rank files (``*.tiktoken.gz``) are OpenAI's published encodings, byte for byte (see LICENSE here for
their source and checksums); the split patterns and special tokens are the encodings' definitions as
tiktoken publishes them. Loading one takes a few hundred milliseconds: do it off the event loop.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tiktoken

HERE = Path(__file__).resolve().parent
ENDOFTEXT = "<|endoftext|>"
ENDOFPROMPT = "<|endofprompt|>"


@dataclass(frozen=True, slots=True)
class EncodingSpec:
    """One encoding: its rank file, that file's sha256 (decompressed), split pattern, special tokens."""

    name: str
    sha256: str
    pattern: str
    special: dict[str, int]


_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|"""
    r"""\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

SPECS = {
    "o200k_base": EncodingSpec(
        "o200k_base",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        _O200K_PATTERN,
        {ENDOFTEXT: 199999, ENDOFPROMPT: 200018},
    ),
    "cl100k_base": EncodingSpec(
        "cl100k_base",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        _CL100K_PATTERN,
        {
            ENDOFTEXT: 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            ENDOFPROMPT: 100276,
        },
    ),
}


class EncodingDamaged(RuntimeError):
    """A shipped rank file does not match its checksum."""


def load(name: str) -> tiktoken.Encoding:
    """The encoding ``name`` (``o200k_base`` or ``cl100k_base``), built from the shipped rank file."""
    import tiktoken  # with the first encoding: a gateway that never counts exactly never loads it

    spec = SPECS[name]
    raw = gzip.decompress((HERE / f"{name}.tiktoken.gz").read_bytes())
    if hashlib.sha256(raw).hexdigest() != spec.sha256:
        raise EncodingDamaged(f"{name}.tiktoken.gz does not match its sha256: reinstall llmgate")
    ranks: dict[bytes, int] = {}
    for line in raw.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return tiktoken.Encoding(name, pat_str=spec.pattern, mergeable_ranks=ranks, special_tokens=spec.special)
