"""Downloads with the standard library only: resumable ``.part`` files, a progress bar, retries.

`download` appends to ``<target>.part`` with an HTTP ``Range`` request when a partial file is
already there, and retries a dropped connection from where it stopped. It leaves the complete
body in the ``.part`` file. Verification and the move to the target are the caller's job (see
`eznas.data.fetch.place`). ``http(s)://`` and ``file://`` URLs work. Proxies come from the
usual ``http_proxy``/``https_proxy``/``no_proxy`` environment variables, as urllib reads them.
"""

from __future__ import annotations

import http.client
import re
import time
import urllib.request
from pathlib import Path
from urllib.error import HTTPError, URLError

from tqdm import tqdm

from eznas import __version__
from eznas.errors import EznasError

USER_AGENT = f"eznas/{__version__} (+urllib)"
ATTEMPTS = 4
RETRY_WAIT_S = 2.0
TIMEOUT_S = 60.0
_CHUNK = 1 << 16
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class NotFound(EznasError):
    """The server has no such file (HTTP 404, or a missing ``file://`` path)."""


def part_path(target: Path) -> Path:
    """The partial-download path of ``target``: the same name with ``.part`` appended."""
    return target.with_name(target.name + ".part")


def download(url: str, part: Path, size: int | None = None, label: str = "") -> int:
    """Download ``url`` into ``part``, resuming from the bytes already there.

    Parameters
    ----------
    url : source URL.
    part : the partial file; it is created, appended to, or restarted when the server does
        not honour the ``Range`` request.
    size : expected size in bytes, if recorded. A ``.part`` that already has this size is
        taken as complete; a larger one is discarded.
    label : progress bar label.

    Returns
    -------
    int
        How many bytes of an existing ``.part`` file were kept (0 for a fresh download).

    Raises
    ------
    NotFound
        If the server answers 404.
    EznasError
        On other HTTP errors, or when every attempt failed (the ``.part`` file is kept so
        that the next run resumes).
    """
    try:
        part.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EznasError(f"cannot create {part.parent} ({e.strerror or e})") from None
    opener = urllib.request.build_opener()
    kept: int | None = None
    reason = ""
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(RETRY_WAIT_S * attempt)
        have = part.stat().st_size if part.exists() else 0
        if size is not None and have > size:
            part.unlink()
            have = 0
        if size is not None and have == size:
            return have if kept is None else kept
        headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={have}-"} if have else {})}
        try:
            with opener.open(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S) as resp:
                have, total = _start(resp, have, url)
                if size is not None and total is not None and total != size:
                    raise EznasError(f"{url}: the server offers {total:,} bytes, expected {size:,} "
                                     f"(another version of the file?)")
                kept = have if kept is None else kept
                expected = size if size is not None else total
                _copy(resp, part, have, expected, label)
        except HTTPError as e:
            if e.code == 416 and have and _range_total(e.headers.get("Content-Range")) == have:
                return have if kept is None else kept
            if e.code == 416:
                part.unlink()
                reason = "the server refused to resume; restarting"
                continue
            if e.code == 404:
                raise NotFound(f"{url}: HTTP 404 Not Found") from None
            if e.code < 500:
                raise EznasError(f"{url}: HTTP {e.code} {e.reason}") from None
            reason = f"HTTP {e.code} {e.reason}"
            continue
        except URLError as e:
            if isinstance(e.reason, FileNotFoundError):
                raise NotFound(f"{url}: no such file") from None
            reason = str(e.reason)
            continue
        except (OSError, http.client.HTTPException) as e:
            reason = f"{type(e).__name__}: {e}"
            continue
        got = part.stat().st_size
        if expected is None or got == expected:
            return kept
        reason = f"connection closed after {got:,} of {expected:,} bytes"
    hint = (f"run the command again to resume from {part}" if part.exists() and part.stat().st_size
            else "check the network, proxy or mirror and run the command again")
    raise EznasError(f"{url}: download failed after {ATTEMPTS} attempts ({reason}); {hint}")


def _start(resp: http.client.HTTPResponse, have: int, url: str) -> tuple[int, int | None]:
    """Where the response body starts in the file, and the file's total size if known."""
    if have and getattr(resp, "status", None) == 206:
        m = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
        if not m or int(m[1]) != have:
            raise EznasError(f"{url}: the server answered a resume request at byte {have:,} with "
                             f"Content-Range {resp.headers.get('Content-Range')!r}")
        return have, None if m[3] == "*" else int(m[3])
    length = resp.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() else None


def _range_total(content_range: str | None) -> int | None:
    """The total size in a ``Content-Range: bytes */TOTAL`` header of a 416 answer."""
    m = re.fullmatch(r"bytes \*/(\d+)", content_range or "")
    return int(m[1]) if m else None


def _copy(resp: http.client.HTTPResponse, part: Path, start: int, total: int | None, label: str) -> None:
    """Write the response body into ``part`` from byte ``start`` on, with a progress bar.

    Local write errors become `EznasError` so that they are not retried as network errors.
    """
    try:
        f = open(part, "ab" if start else "wb")
    except OSError as e:
        raise EznasError(f"cannot write {part} ({e.strerror or e})") from None
    with f, tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                 disable=None, leave=False) as bar:
        while chunk := resp.read(_CHUNK):
            try:
                f.write(chunk)
            except OSError as e:
                raise EznasError(f"cannot write {part} ({e.strerror or e})") from None
            bar.update(len(chunk))
