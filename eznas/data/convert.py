"""Produce data files from downloaded archives.

- NDS: a sweep file is copied out of ``data.zip`` by file name, whatever folder holds it in
  the archive. Python's zipfile checks each member's CRC-32 while reading.
- CIFAR: the official python tarball is converted to the ``.npz`` sample layout of
  ``images/cifar*/``. The arrays are ``images`` uint8 [N,32,32,3] (HWC, RGB), ``labels`` int64 [N]
  (fine labels for CIFAR-100), ``class_names``, ``source``, ``ref`` (``<member>#<row>``),
  ``orig_index`` and ``orig_split``.

  The sample is taken from the **test set**. A permutation is drawn with
  ``numpy.random.default_rng(0)``, and the images are walked in that order. Each image is kept
  until its class has 500 images (CIFAR-10) or 50 (CIFAR-100). The rows stay in that random
  order. This makes 5,000 images, balanced like the project's reference samples, but not the
  same images. The reference samples are drawn from federated-learning copies of CIFAR and do
  not record the original indices, so they cannot be reproduced from the official archive.
  The converted file therefore has a different sha256. Every converted row records its test-set
  index in ``orig_index``.

  The CIFAR batches are pickles. They are read only after the archive's published size and md5
  have matched, and then through an unpickler that resolves numpy's array reconstruction and
  nothing else.
"""

from __future__ import annotations

import pickle
import shutil
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from eznas.errors import EznasError

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct

SAMPLE_SEED = 0
PER_CLASS = {"cifar10": 500, "cifar100": 50}
# kind -> (test batch member, metadata member, label key, class-name key)
_MEMBERS = {
    "cifar10": ("cifar-10-batches-py/test_batch", "cifar-10-batches-py/batches.meta", "labels", "label_names"),
    "cifar100": ("cifar-100-python/test", "cifar-100-python/meta", "fine_labels", "fine_label_names"),
}
_CHUNK = 1 << 20


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that resolves numpy's array reconstruction and refuses every other global."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        """Return an allowed global; raise `pickle.UnpicklingError` for any other."""
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None


def load_array_pickle(f: IO[bytes]) -> Any:
    """Unpickle a CIFAR batch (Python 2 strings read as latin-1), allowing only numpy arrays.

    Raises
    ------
    EznasError
        If the pickle is malformed or refers to anything but numpy array reconstruction.
    """
    try:
        return _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise EznasError(f"refused or malformed pickle ({e})") from None


def extract_member(archive: Path, name: str, out: Path) -> bool:
    """Copy the member of zip ``archive`` whose file name is ``name`` to ``out``.

    Returns
    -------
    bool
        False if the archive has no such member (nothing is written).

    Raises
    ------
    EznasError
        If the archive is unreadable, the name is ambiguous, or the member fails its CRC check.
    """
    try:
        with zipfile.ZipFile(archive) as z:
            members = [i for i in z.infolist() if not i.is_dir() and i.filename.rsplit("/", 1)[-1] == name]
            if not members:
                return False
            if len(members) > 1:
                raise EznasError(f"{archive}: {len(members)} members are named {name}; expected one")
            with z.open(members[0]) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise EznasError(f"{archive}: cannot extract {name} ({e}); delete the archive and fetch again") from None
    return True


def balanced_sample(labels: np.ndarray, per_class: int, seed: int = SAMPLE_SEED) -> np.ndarray:
    """Indices of a seeded, class-balanced sample, in the sampled order.

    Walks ``numpy.random.default_rng(seed).permutation(len(labels))`` and keeps each index
    whose class has fewer than ``per_class`` kept so far.

    Raises
    ------
    EznasError
        If some class has fewer than ``per_class`` images.
    """
    classes = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=classes)
    if counts.min() < per_class:
        raise EznasError(f"class {int(counts.argmin())} has {int(counts.min())} images, fewer than {per_class}")
    taken = np.zeros(classes, dtype=np.int64)
    keep = []
    for i in np.random.default_rng(seed).permutation(len(labels)):
        c = labels[i]
        if taken[c] < per_class:
            taken[c] += 1
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def convert_cifar(archive: Path, kind: str, out: Path) -> str:
    """Write the balanced test-set sample of an official CIFAR python tarball to ``out``.

    Parameters
    ----------
    archive : ``cifar-10-python.tar.gz`` or ``cifar-100-python.tar.gz``.
    kind : ``"cifar10"`` or ``"cifar100"``.
    out : the ``.npz`` file to write (any name; nothing is appended to it).

    Returns
    -------
    str
        A one-line description of the sample.

    Raises
    ------
    EznasError
        If the tarball lacks the expected members or they have the wrong shape.
    """
    batch_member, meta_member, label_key, names_key = _MEMBERS[kind]
    try:
        with tarfile.open(archive, "r:gz") as tar:
            batch, meta = (_read_member(tar, m) for m in (batch_member, meta_member))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise EznasError(f"{archive}: unreadable tarball ({e}); delete it and fetch again") from None
    except EznasError as e:
        raise EznasError(f"{archive}: {e}") from None
    try:
        data = np.asarray(batch["data"])
        labels = np.asarray(batch[label_key], dtype=np.int64)
        names = np.asarray([str(n) for n in meta[names_key]])
    except (KeyError, TypeError, ValueError) as e:
        raise EznasError(f"{archive}: {batch_member} or {meta_member} lacks {e}") from None
    if (data.dtype != np.uint8 or data.shape != (len(labels), 3 * 32 * 32) or not len(labels)
            or labels.min() < 0 or labels.max() >= len(names)):
        raise EznasError(f"{archive}: {batch_member} holds {data.dtype} {list(data.shape)} with "
                         f"{len(labels)} labels; expected uint8 [N,3072] and labels below {len(names)}")
    try:
        idx = balanced_sample(labels, PER_CLASS[kind])
    except EznasError as e:
        raise EznasError(f"{archive}: {e}") from None
    images = data[idx].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    with open(out, "wb") as f:
        np.savez_compressed(
            f, images=np.ascontiguousarray(images), labels=labels[idx], class_names=names,
            source=np.full(len(idx), archive.name), ref=np.asarray([f"{batch_member}#{i}" for i in idx]),
            orig_index=idx, orig_split=np.full(len(idx), "test"),
        )
    return f"{len(idx):,} test images, {PER_CLASS[kind]} per class, seed {SAMPLE_SEED}"


def _read_member(tar: tarfile.TarFile, name: str) -> Any:
    try:
        f = tar.extractfile(name)
    except KeyError:
        raise EznasError(f"no member {name}") from None
    if f is None:
        raise EznasError(f"member {name} is not a regular file")
    with f:
        return load_array_pickle(f)
