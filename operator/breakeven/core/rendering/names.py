"""Kubernetes-valid names and label values, shortened with a hash when they do not fit.

Plan names may be 253 characters with dots, model ids contain `/`: neither is a valid label value
or DNS-1123 label as is. Each function here maps any string to a valid one, deterministically, and
leaves a string that is already valid untouched (so `llama` stays `llama`). When a string has to be
changed or cut, an 8-character hash of the original is appended, so two different inputs do not
collapse onto one name.

Pure: string functions only.
"""

from __future__ import annotations

import hashlib
import re

LABEL_VALUE_MAX = 63
DNS_LABEL_MAX = 63
# Workload names leave room for what controllers append: LeaderWorkerSet pods are named
# `<lws>-<group>-<worker>` and the leader's name is its hostname (a DNS label, 63 characters).
WORKLOAD_NAME_MAX = 52

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_HASH_LEN = 8


def short_hash(text: str) -> str:
    """Eight hex digits of the SHA-256 of `text`."""
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LEN]


def is_label_value(text: str) -> bool:
    return len(text) <= LABEL_VALUE_MAX and bool(_LABEL_VALUE.match(text))


def is_dns_label(text: str) -> bool:
    return len(text) <= DNS_LABEL_MAX and bool(_DNS_LABEL.match(text))


def is_dns1035_label(text: str) -> bool:
    return len(text) <= DNS_LABEL_MAX and bool(_DNS1035_LABEL.match(text))


def _fit(cleaned: str, original: str, limit: int, strip: str) -> str:
    if cleaned and cleaned == original and len(cleaned) <= limit:
        return cleaned
    suffix = short_hash(original)
    head = cleaned[: limit - _HASH_LEN - 1].strip(strip)
    return f"{head}-{suffix}" if head else suffix


def label_value(text: str) -> str:
    """`text` as a label value: `deepseek-ai/DeepSeek-V3` -> `deepseek-ai-DeepSeek-V3-<hash>`."""
    if is_label_value(text):
        return text
    cleaned = re.sub(r"[^-A-Za-z0-9_.]+", "-", text).strip("-_.")
    return _fit(cleaned, text, LABEL_VALUE_MAX, "-_.")


def dns_label(text: str, limit: int = DNS_LABEL_MAX) -> str:
    """`text` as a DNS-1123 label (lowercase alphanumerics and `-`), at most `limit` long."""
    if len(text) <= limit and _DNS_LABEL.match(text):
        return text
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return _fit(cleaned, text, limit, "-")


def dns1035_label(text: str, limit: int = DNS_LABEL_MAX) -> str:
    """A DNS-1035 label (a Service name): a DNS-1123 label that starts with a letter."""
    name = dns_label(text, limit)
    if _DNS1035_LABEL.match(name):
        return name
    return dns_label(f"x-{text}", limit)
