"""Every data file eznas knows: where it lives in the data directory, where it comes from, how
it is verified.

The values recorded here are the reference. ``nb201/nats_bench.csv`` has the sha256 from
``nb201/PROVENANCE.md``. The NDS sweep files have a size and a full git blob id; the first
8 hex digits of each id are the ones listed in ``nds/PROVENANCE.md``. The full id was computed
(``git hash-object``) from the ``../shared/data`` copy that matches those prefixes. No sha256
is recorded for them. The CIFAR archives have the md5 published on the CIFAR home page and
the byte size the site serves (the Content-Length seen in many public download logs). The
converted ``.npz`` samples, ``data.zip`` and the NDS CIFAR-10 sweeps have no recorded checksum
and are verified by structure. The two NAS-Bench-Suite-Zero samples (``naslib/``) have the size
and sha256 of ``naslib/PROVENANCE.md`` and come from NASLib's GitHub repository at the commit
named there; that URL could not be reached from the machines eznas was built on.
"""

from __future__ import annotations

from dataclasses import dataclass

NB201_COMMIT = "b307ae5fe6e8d7043cd4fe7d1c3532288271adb7"
NB201_URL = f"https://raw.githubusercontent.com/v-tao/nats-bench-landscape/{NB201_COMMIT}/nats_bench.csv"
NDS_URL = "https://dl.fbaipublicfiles.com/nds/data.zip"
CIFAR_HOME = "https://www.cs.toronto.edu/~kriz/"
NASLIB_COMMIT = "9052f540457588af87633988cc1036bd2250419e"
NASLIB_URL = f"https://raw.githubusercontent.com/automl/NASLib/{NASLIB_COMMIT}/naslib/data/"

GROUPS = ("nb201", "nds", "images", "naslib")
ARCHIVE_DIR = "archives"


@dataclass(frozen=True)
class Archive:
    """A downloaded archive that data files are extracted or converted from.

    Attributes
    ----------
    name : file name under ``<data dir>/archives/`` (and under ``<mirror>/archives/``).
    url : the public source.
    kind : ``"zip"`` (members extracted by file name) or ``"cifar10"`` / ``"cifar100"``
        (the official python tarball, converted to the ``.npz`` sample layout).
    size : expected size in bytes, or None where none is recorded.
    md5 : expected md5 as published by the source, or None where none is recorded.
    """

    name: str
    url: str
    kind: str
    size: int | None = None
    md5: str | None = None


@dataclass(frozen=True)
class DataFile:
    """One file of the data directory.

    Attributes
    ----------
    path : path relative to the data directory, e.g. ``"nds/DARTS_in.json"``.
    group : ``--only`` group: ``"nb201"``, ``"nds"``, ``"images"`` or ``"naslib"``.
    family : heading it is listed under by ``eznas data check``.
    kind : structure check: ``"nb201"`` (CSV), ``"nds"`` (sweep list), ``"reruns"`` (top/mid
        dict), ``"npz"`` (image sample) or ``"naslib"`` (NAS-Bench-Suite-Zero JSON; always
        verified by its recorded sha256).
    required : needed by the default experiment (``experiments/default.toml``).
    url : public source of a directly downloaded file, else None.
    archive : name of the archive it comes from, else None.
    sha256, size, git_blob : recorded reference values, None where none is recorded.
    classes : number of classes of an image sample (``kind="npz"``).
    """

    path: str
    group: str
    family: str
    kind: str
    required: bool
    url: str | None = None
    archive: str | None = None
    sha256: str | None = None
    size: int | None = None
    git_blob: str | None = None
    classes: int | None = None

    @property
    def name(self) -> str:
        """The file name (the member name looked up in an archive)."""
        return self.path.rsplit("/", 1)[-1]


ARCHIVES: dict[str, Archive] = {
    "nds_data.zip": Archive("nds_data.zip", NDS_URL, "zip"),
    "cifar-10-python.tar.gz": Archive("cifar-10-python.tar.gz", CIFAR_HOME + "cifar-10-python.tar.gz", "cifar10",
                                      size=170498071, md5="c58f30108f718f92721af3b95e74349a"),
    "cifar-100-python.tar.gz": Archive("cifar-100-python.tar.gz", CIFAR_HOME + "cifar-100-python.tar.gz", "cifar100",
                                       size=169001437, md5="eb9058c3a382ffc7106e4002c42a8d85"),
}

F_NB201 = "NAS-Bench-201 ground truth (200-epoch test accuracy)"
F_NDS_IN = "NDS ImageNet sweeps (50 epochs)"
F_NDS_IN_MORE = "NDS ImageNet sweeps with fixed width/depth or sampled lr/wd"
F_NDS_RERUNS = "NDS CIFAR-10 seed reruns (seed-noise reference, not tasks)"
F_NDS_CIFAR = "NDS CIFAR-10 sweeps (in the official data.zip)"
F_IMAGES = "CIFAR image samples (probe inputs)"
F_NASLIB = "NAS-Bench-101 / NAS-Bench-301 samples (NAS-Bench-Suite-Zero, via NASLib)"

# name -> (bytes, full git blob id); the first 8 hex digits are those of nds/PROVENANCE.md.
_NDS_RECORDED = {
    "DARTS_in": (238633, "89212c5c04fa67eb1bd596d7b247e41a41fb1052"),
    "Amoeba_in": (257301, "5dced8e55a0b94cef63078d2fd98f8391fd6bbb6"),
    "NASNet_in": (250643, "bd13358af03b85930989a08c160aac73efdb3b68"),
    "ENAS_in": (241690, "4b5d4e73773779f8a5df48fb050e7f05085a63c1"),
    "PNAS_in": (247525, "5c817abf4aeb75ffc89d3211ba954e55e781c926"),
    "ResNeXt-A_in": (216407, "6756c08dbf4e4f1ecf310a6bbff1a1686c5ee2ff"),
    "ResNeXt-B_in": (273355, "466b4df14f2fe44e86cbb0d9eea9f95443c5accd"),
    "DARTS_fix-w-d_in": (550153, "6dee33051ffe2e33f06b1defe3ebcd46a5388ac8"),
    "DARTS_lr-wd_in": (1019553, "d9bb32a7f23d3a92e741e212d9094d6113bf023e"),
    "ResNet_lr-wd_in": (823226, "2e6e0b0f870efa90625db1d0debe989db3d140a0"),
    "Vanilla_lr-wd_in": (823835, "d5d5f0c09dfc1ae5f12ba7d3bac77cb378dc1152"),
    "ResNet_reruns": (737579, "b9d17803aca4eae7b9e2cea6ff8d4b275fdf78a1"),
    "Vanilla_reruns": (741574, "8e6d04a3df694a51a2f5a7ae5ee0348d991927fa"),
}
_NDS_DEFAULT = ("DARTS_in", "Amoeba_in", "NASNet_in", "ENAS_in", "PNAS_in", "ResNeXt-A_in", "ResNeXt-B_in")
# The CIFAR-10 sweeps of data.zip, named as in the file list of NNI's NDS database generator
# (microsoft/nni, nni/nas/benchmarks/nds/db_gen.py), which reads the extracted archive. Nothing
# about their bytes is recorded.
_NDS_CIFAR = (
    "Amoeba", "DARTS", "DARTS_fix-w-d", "DARTS_lr-wd", "ENAS", "ENAS_fix-w-d", "NASNet", "PNAS",
    "PNAS_fix-w-d", "ResNeXt-A", "ResNeXt-B", "ResNet", "ResNet-B", "ResNet_lr-wd", "ResNet_rng1",
    "ResNet_rng2", "ResNet_rng3", "Vanilla", "Vanilla_lr-wd", "Vanilla_rng1", "Vanilla_rng2", "Vanilla_rng3",
)


def _nds_file(stem: str) -> DataFile:
    size, blob = _NDS_RECORDED.get(stem, (None, None))
    if stem.endswith("_reruns"):
        family, kind = F_NDS_RERUNS, "reruns"
    elif stem.endswith("_in"):
        family, kind = (F_NDS_IN if stem in _NDS_DEFAULT else F_NDS_IN_MORE), "nds"
    else:
        family, kind = F_NDS_CIFAR, "nds"
    return DataFile(f"nds/{stem}.json", "nds", family, kind, stem in _NDS_DEFAULT,
                    archive="nds_data.zip", size=size, git_blob=blob)


FILES: tuple[DataFile, ...] = (
    DataFile("nb201/nats_bench.csv", "nb201", F_NB201, "nb201", True, url=NB201_URL,
             sha256="cb5d777ec3368be83c8f9b3aa4d520696051cb0eb8d94b8f85b519f9ea4afa3e", size=3024008),
    *(_nds_file(stem) for stem in (*_NDS_RECORDED, *_NDS_CIFAR)),
    DataFile("images/cifar10/cifar10.npz", "images", F_IMAGES, "npz", True,
             archive="cifar-10-python.tar.gz", classes=10),
    DataFile("images/cifar100/cifar100.npz", "images", F_IMAGES, "npz", True,
             archive="cifar-100-python.tar.gz", classes=100),
    DataFile("naslib/zc_nasbench101.json", "naslib", F_NASLIB, "naslib", False,
             url=NASLIB_URL + "zc_nasbench101.json", size=259564,
             sha256="c34840bc9af68b6ebaa7f052e42c1749a9a737d7243078be2a5548052bc5a0c2"),
    DataFile("naslib/zc_nasbench301.json", "naslib", F_NASLIB, "naslib", False,
             url=NASLIB_URL + "zc_nasbench301.json", size=240552,
             sha256="e47e258b95f63f85a6917dfc5814f5b42f793d7ef8f9a00e66689783e43affac"),
)

IMAGENET16_NOTE = ("ImageNet16-120 images: absent; eznas has no source for them and does not read them "
                   "(nb201:ImageNet16-120 networks get CIFAR-100 images resized to 16x16)")
