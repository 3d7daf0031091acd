"""Downloading the datasets from their official sources, checked by MD5 (and SHA-256 where known)."""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from fewshot_bench.data.datasets import REMOTE_FILES, RemoteFile
from fewshot_bench.errors import UserError
from fewshot_bench.records import temp_beside


def sources(remote: RemoteFile, base_url: str | None) -> tuple[str, ...]:
    """Official URLs, or ``base_url/<path under the data root>`` for a mirror."""
    return (f"{base_url.rstrip('/')}/{remote.name}",) if base_url else remote.urls


def download(remote: RemoteFile, root: Path, base_url: str | None = None, timeout: float = 60,
             on_bytes=None) -> Path:
    """Fetch one file into ``root``, check its checksums, and move it into place atomically."""
    target = root / remote.name
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in sources(remote, base_url):
        md5, sha256 = hashlib.md5(), hashlib.sha256()
        fd, tmp = temp_beside(target, ".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    md5.update(chunk)
                    sha256.update(chunk)
                    if on_bytes:
                        on_bytes(len(chunk))
            if md5.hexdigest() != remote.md5:
                errors.append(f"{url}: MD5 {md5.hexdigest()} != expected {remote.md5}")
                continue
            if remote.sha256 and sha256.hexdigest() != remote.sha256:
                errors.append(f"{url}: SHA-256 {sha256.hexdigest()} != expected {remote.sha256}")
                continue
            os.replace(tmp, target)
            return target
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
        finally:
            Path(tmp).unlink(missing_ok=True)
    raise UserError(f"could not download {remote.name} ({'; '.join(errors)}); "
                    f"download it by hand to {target} or pass --base-url for a mirror")


def missing_files(root: Path, datasets=("omniglot", "mnist")) -> list[RemoteFile]:
    return [r for r in REMOTE_FILES if r.dataset in datasets and not (root / r.name).is_file()]
