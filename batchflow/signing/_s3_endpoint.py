"""Where a presigned S3 GET points: botocore's endpoint rules for presigning, by hand.

Mirrors what ``generate_presigned_url("get_object")`` produces with
``Config(signature_version="s3v4", s3={"addressing_style": ...})`` (botocore's S3 endpoint
ruleset plus its presign-only "global endpoint" tweak), proved byte for byte by the tests:

- no custom endpoint, addressing ``auto``/``path``: presigned URLs of the ``aws`` partition use
  the global ``s3.amazonaws.com`` host (virtual-hosted when the bucket is a plain DNS label,
  path-style otherwise) unless path style is forced, which uses the regional host
  (``s3.amazonaws.com`` for us-east-1, ``s3.<region>.amazonaws.com`` elsewhere);
- addressing ``virtual``: the regional host, virtual-hosted when the bucket is a DNS label;
  buckets with dots fall back to path style over https;
- a custom endpoint (MinIO, R2, moto, rclone): path style unless ``virtual`` is asked for; then
  virtual-hosted unless the host is an IP address (http allows dotted buckets as sub-domains).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from batchflow.errors import ConfigError

__all__ = ["S3Endpoint", "resolve_s3_base"]

_HOST_LABEL_RE = re.compile(r"^(?!-)[a-zA-Z\d-]{1,63}(?<!-)$")
_IPV4_RE = re.compile(
    r"^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$"
)
ADDRESSING_STYLES = ("auto", "path", "virtual")


def _is_host_label(value: str, *, allow_subdomains: bool) -> bool:
    if allow_subdomains:
        return all(_HOST_LABEL_RE.match(label) for label in value.split("."))
    return _HOST_LABEL_RE.match(value) is not None


def _is_virtual_hostable(bucket: str, *, allow_subdomains: bool) -> bool:
    if len(bucket) < 3 or bucket.lower() != bucket or _IPV4_RE.match(bucket):
        return False
    return _is_host_label(bucket, allow_subdomains=allow_subdomains)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class S3Endpoint:
    """Everything about one bucket's URLs that does not depend on the key.

    ``prefix`` is the URL up to (excluding) the ``/`` before the quoted key; ``path_prefix`` is
    its path part (the canonical URI starts with it); ``host`` is the signed Host header.
    """

    prefix: str
    path_prefix: str
    host: str


def _host_header(scheme: str, netloc: str) -> str:
    parts = urlsplit(f"{scheme}://{netloc}")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(scheme)
    if parts.port is not None and parts.port != default:
        host = f"{host}:{parts.port}"
    return host


def _endpoint(scheme: str, netloc: str, path: str) -> S3Endpoint:
    if path.endswith("/"):
        path = path[:-1]
    return S3Endpoint(
        prefix=f"{scheme}://{netloc}{path}", path_prefix=path, host=_host_header(scheme, netloc)
    )


def _dns_suffix(region: str) -> tuple[str, str]:
    """(partition, dns suffix) of a region: enough of botocore's partitions for real use."""
    if region.startswith("cn-"):
        return "aws-cn", "amazonaws.com.cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov", "amazonaws.com"
    return "aws", "amazonaws.com"


def resolve_s3_base(
    bucket: str, *, region: str, endpoint_url: str | None, addressing_style: str
) -> S3Endpoint:
    """The URL prefix, canonical path prefix and Host header for ``bucket``."""
    if addressing_style not in ADDRESSING_STYLES:
        raise ConfigError(
            f"S3 addressing style must be one of {', '.join(ADDRESSING_STYLES)}, "
            f"got {addressing_style!r}"
        )
    quoted_bucket = quote(bucket, safe="-_.~")
    if endpoint_url is None:
        partition, suffix = _dns_suffix(region)
        force_path = addressing_style == "path"
        use_global = (
            partition == "aws"
            and addressing_style != "virtual"
            and not force_path
            and _HOST_LABEL_RE.match(bucket) is not None
        )
        if use_global or region in ("us-east-1", "aws-global"):
            host = f"s3.{suffix}"
        else:
            host = f"s3.{region}.{suffix}"
        if not force_path and _is_virtual_hostable(bucket, allow_subdomains=False):
            return _endpoint("https", f"{bucket}.{host}", "")
        return _endpoint("https", host, f"/{quoted_bucket}")

    parts = urlsplit(endpoint_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise ConfigError(
            f"S3 endpoint URL must look like https://host[:port][/path], got {endpoint_url!r}"
        )
    scheme, netloc, path = parts.scheme, parts.netloc, parts.path
    normalized = quote(path) if path else "/"
    if not normalized.endswith("/"):
        normalized += "/"
    if addressing_style == "virtual":
        hostable = _is_virtual_hostable(bucket, allow_subdomains=False)
        if hostable and not _is_ip(parts.hostname or ""):
            return _endpoint(scheme, f"{bucket}.{netloc}", path)
        if (
            not hostable
            and scheme == "http"
            and _is_virtual_hostable(bucket, allow_subdomains=True)
        ):
            return _endpoint(scheme, f"{bucket}.{netloc}", path)
    return _endpoint(scheme, netloc, f"{normalized}{quoted_bucket}")
