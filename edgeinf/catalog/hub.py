"""Pulling any GGUF model from a model hub by name: `owner/repo[:QUANT]`, `hf.co/owner/repo:QUANT`
or a file's URL, resolved through the hub's API (Hugging Face's shape).

The revision is pinned to a commit first; the file list gives each file's size and LFS
sha256; the quantization is picked by name (Q4_K_M when the repository has several and none
is asked for); a split model's shards are fetched as a set. Each file is downloaded beside
its final name (resuming an interrupted download), checked against its sha256, and only then
renamed; the model is registered as `owner/repo:QUANT`. A token (HF_TOKEN, or the hub's
token file) goes only to the hub's own host: httpx drops it from redirects to other hosts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlparse

import httpx

from edgeinf.catalog.fetch import Progress, client, fetch_hub, file_url
from edgeinf.catalog.pull import exclusive
from edgeinf.catalog.store import ModelStore
from edgeinf.errors import ChecksumMismatchError, InvalidRequestError, PullError
from edgeinf.files import fsync_dir

_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO = re.compile(rf"^{_PART}/{_PART}$")
_QUANT = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_HOSTS = ("hf.co/", "huggingface.co/")
# When a repository holds several quantizations and none is named: the first it has.
PREFERRED = ("Q4_K_M", "Q4_K_S", "Q5_K_M", "Q4_0", "Q6_K", "Q8_0")


@dataclass(frozen=True)
class HubRef:
    """A model on the hub, as a user named it."""

    repo: str  # owner/name
    quant: str | None = None  # None: the repository's only one, or PREFERRED's first
    file: str | None = None  # a file named directly (its URL)
    revision: str = "main"


@dataclass(frozen=True)
class HubFile:
    path: str  # in the repository
    size: int
    sha256: str


@dataclass(frozen=True)
class Resolved:
    ref: HubRef
    commit: str
    quant: str
    files: tuple[HubFile, ...]  # a split model's shards in order; else one file

    @property
    def name(self) -> str:
        """The name it is registered under."""
        return f"{self.ref.repo}:{self.quant}"

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def is_hub_ref(text: str) -> bool:
    """Whether a name is meant for the hub (it has a slash) rather than the catalog."""
    return "/" in text


def parse_ref(text: str, hub_base: str) -> HubRef:
    """`owner/repo`, `owner/repo:QUANT`, `hf.co/owner/repo:QUANT`, or a file's URL on the hub
    (`https://huggingface.co/owner/repo/resolve/REV/FILE.gguf`); refused before any request
    when it could name anything else (`..`, stray slashes, odd characters, another host)."""
    raw = text.strip()
    if raw.startswith(("https://", "http://")):
        url = urlparse(raw)
        if url.netloc not in (urlparse(hub_base).netloc, *(h.rstrip("/") for h in _HOSTS)):
            raise _bad(text, f"files are pulled from the hub ({hub_base}) only")
        parts = url.path.strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve" or not parts[-1].lower().endswith(".gguf"):
            raise _bad(text, "a file URL looks like https://HUB/owner/repo/resolve/main/FILE.gguf")
        repo, revision, file = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        _check_repo(text, repo)
        if not all(_safe_segment(p) for p in file.split("/")) or not _safe_segment(revision):
            raise _bad(text, "the file's path holds a segment that is not a plain name")
        return HubRef(repo, None, file, revision)
    for host in _HOSTS:
        raw = raw.removeprefix(host)
    repo, _, quant = raw.partition(":")
    _check_repo(text, repo)
    if quant and not _QUANT.match(quant):
        raise _bad(text, "the quantization after ':' is a name like Q4_K_M")
    return HubRef(repo, quant or None)


def _safe_segment(part: str) -> bool:
    return (
        bool(part)
        and part not in (".", "..")
        and re.fullmatch(r"[A-Za-z0-9._-]+", part) is not None
    )


def _check_repo(text: str, repo: str) -> None:
    if ".." in repo or not _REPO.match(repo):
        raise _bad(text, "a hub model is owner/repo[:QUANT], letters, digits, '.', '_' and '-'")


def _bad(text: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(f"'{text[:200]}' is not a model name to pull: {why}", param="model")


def hub_token() -> str | None:
    """HF_TOKEN, else the token file the hub's own tools write ($HF_HOME/token)."""
    if token := os.environ.get("HF_TOKEN", "").strip():
        return token
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    try:
        return (home / "token").read_text().strip() or None
    except OSError:
        return None


class Hub:
    """The hub's API at `base`, with the user's token if any."""

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base.rstrip("/")
        self.http = client()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"
        self.token = token

    def close(self) -> None:
        self.http.close()

    def _get(self, ref: HubRef, path: str) -> httpx.Response:
        response = self.http.get(f"{self.base}{path}")
        if response.status_code in (401, 403):
            raise self._gated(ref)
        if response.status_code == 404:
            raise PullError(
                f"the hub has no model {ref.repo} (revision {ref.revision}); check the name "
                "on the hub's page"
            )
        response.raise_for_status()
        return response

    def _gated(self, ref: HubRef) -> PullError:
        if self.token:
            return PullError(
                f"{ref.repo} is gated and the token given has no access to it; accept its "
                "terms on its hub page with that account, or use another token"
            )
        return PullError(
            f"{ref.repo} is gated: accept its terms on its hub page, then give a token "
            "with HF_TOKEN=... or in ~/.cache/huggingface/token"
        )

    def resolve(self, ref: HubRef) -> Resolved:
        """Pin the revision to a commit and choose the files."""
        repo = quote(ref.repo, safe="/")
        info = self._get(ref, f"/api/models/{repo}/revision/{quote(ref.revision, safe='')}")
        commit = str(info.json().get("sha") or "")
        if not re.fullmatch(r"[0-9a-f]{40}", commit):
            raise PullError(f"the hub gave no commit for {ref.repo}; retry later")
        tree = self._get(ref, f"/api/models/{repo}/tree/{commit}?recursive=true").json()
        files = [
            HubFile(str(f["path"]), int(f["lfs"]["size"]), str(f["lfs"]["oid"]).lower())
            for f in tree
            if f.get("type") == "file"
            and str(f.get("path", "")).lower().endswith(".gguf")
            and isinstance(f.get("lfs"), dict)
        ]
        for f in files:
            if not all(_safe_segment(p) for p in f.path.split("/")):
                raise PullError(f"the hub listed a file named {f.path!r}; refusing it")
            if not re.fullmatch(r"[0-9a-f]{64}", f.sha256) or f.size <= 0:
                raise PullError(f"the hub listed {f.path} without a sha256 and size; refusing it")
        quant, chosen = choose(ref, files)
        return Resolved(ref, commit, quant, chosen)

    def download(
        self,
        resolved: Resolved,
        store: ModelStore,
        progress: Progress,
        notify: Callable[[str], None] = lambda _: None,
    ) -> Path:
        """Fetch, verify and publish every file; register the model; its first file's path."""
        root = store.ensure() / "hub" / resolved.ref.repo.replace("/", "--")
        root.mkdir(parents=True, exist_ok=True)
        paths = [root / f.path for f in resolved.files]
        with exclusive(root / ".lock"):  # one pull of a repository at a time, across processes
            for f, final in zip(resolved.files, paths, strict=True):
                if final.is_file() and store.verify(final, f.sha256):
                    progress(f.size)
                    continue
                final.parent.mkdir(parents=True, exist_ok=True)
                self._fetch(resolved, f, final, progress)
                store.mark_verified(final, f.sha256)
                notify(f"verified {f.path}")
            store.register_verified(
                resolved.name,
                [(p, f.sha256) for p, f in zip(paths, resolved.files, strict=True)],
                {"hub": resolved.ref.repo, "commit": resolved.commit},
            )
        return paths[0]

    def _fetch(self, resolved: Resolved, f: HubFile, final: Path, progress: Progress) -> None:
        """One file beside its final name, resumed if a pull left part of it; renamed only
        once its sha256 matched."""
        partial = final.with_name(f".{final.name}.partial")
        url = file_url(self.base, resolved.ref.repo, resolved.commit, f.path)
        again = "pull again: it resumes where it stopped"
        try:
            digest = fetch_hub(self.http, url, partial, progress)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code in (401, 403):
                raise self._gated(resolved.ref) from None
            raise PullError(f"{f.path}: HTTP {exc.response.status_code}; {again}") from None
        except httpx.HTTPError as exc:
            raise PullError(f"{f.path}: {type(exc).__name__}; {again}") from None
        if digest != f.sha256:
            partial.unlink(missing_ok=True)
            raise ChecksumMismatchError(
                f"{f.path} from the hub did not match its sha256 {f.sha256[:12]}… (got "
                f"{digest[:12]}…); nothing was kept. Pull again, or report the repository"
            )
        os.replace(partial, final)
        fsync_dir(final.parent)


def choose(ref: HubRef, files: list[HubFile]) -> tuple[str, tuple[HubFile, ...]]:
    """(quant, files): the one named, the repository's only one, or PREFERRED's first; a
    split model's shards together."""
    if ref.file is not None:
        named = [f for f in files if f.path == ref.file]
        if not named:
            raise PullError(f"{ref.repo} has no file {ref.file} at {ref.revision}")
        groups = _groups(files)
        group = next(g for g in groups.values() if named[0] in g)
        return quant_of(ref.file), group
    groups = _groups(files)
    by_quant: dict[str, tuple[HubFile, ...]] = {}
    for group in groups.values():
        by_quant.setdefault(quant_of(group[0].path).upper(), group)
    if not by_quant:
        raise PullError(f"{ref.repo} holds no GGUF file; choose a repository of GGUF models")
    if ref.quant is not None:
        wanted = ref.quant.upper()
        if wanted not in by_quant:
            raise PullError(f"{ref.repo} has no {ref.quant}; it has {', '.join(sorted(by_quant))}")
        return wanted, by_quant[wanted]
    if len(by_quant) == 1:
        return next(iter(by_quant.items()))
    for quant in PREFERRED:
        if quant in by_quant:
            return quant, by_quant[quant]
    raise PullError(
        f"{ref.repo} holds several quantizations ({', '.join(sorted(by_quant))}); name one, "
        f"as {ref.repo}:{sorted(by_quant)[0]}"
    )


def _groups(files: list[HubFile]) -> dict[str, tuple[HubFile, ...]]:
    """Files by model: a split model's shards under their common stem, in order."""
    out: dict[str, list[HubFile]] = {}
    for f in sorted(files, key=lambda f: f.path):
        stem = _SHARD.sub("", f.path) if _SHARD.search(f.path) else f.path
        out.setdefault(stem, []).append(f)
    return {k: tuple(v) for k, v in out.items()}


def quant_of(path: str) -> str:
    """The quantization a file's name says (Q4_K_M, IQ3_XXS, F16, ...), else its stem."""
    name = _SHARD.sub("", Path(path).name).removesuffix(".gguf").removesuffix(".GGUF")
    found = re.findall(r"(?i)(?:^|[-_.])((?:I?Q\d[A-Z0-9_]*?)|BF16|F16|F32)(?=$|[-.])", name)
    return found[-1].upper() if found else name
