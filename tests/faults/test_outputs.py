"""The output side of the fault catalogue: every writing command x every way its output can go wrong.

Classes: output overlapping an input (is it, contains it, lies inside it; with and without --force), a parent
that is a file, an unwritable folder, a full disk, SIGINT/SIGTERM/SIGHUP mid-write, and, for the outputs that
succeed, umask modes and byte-identical reruns. Every failing case must give exit 2 (or 128+signal), one
`error:` line naming the path, no traceback, inputs byte-identical and no file left anywhere under the root.

Most cases run the CLI's entry point in this process (one subprocess costs 1-2 s of imports); signals run real
subprocesses. As root (CI containers) chmod does not stop writes, so "unwritable" is a read-only bind mount
(EROFS) and "disk full" a full 64 KiB tmpfs; as another user, chmod 0555 stands in for the first and the
second is skipped (it needs mount).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import Fault, assert_clean_failure, partials, signal_mid_run, snapshot

ROOT = os.geteuid() == 0


# -- shared inputs (built once) ---------------------------------------------------------------------------------
def cli(argv, root: Path) -> subprocess.CompletedProcess:
    """`csrefiner ARGV` in this process with `root` as working folder; returns what a subprocess would."""
    from csrefiner.cli import boundary, main

    def exit_now(code):  # the real one ends the process without teardown
        boundary.remove_temps()
        raise SystemExit(code)

    handlers = {s: signal.getsignal(s) for s in boundary.SIGNALS}
    out, err, cwd, code = io.StringIO(), io.StringIO(), os.getcwd(), 0
    orig, boundary.exit_now = boundary.exit_now, exit_now
    try:
        os.chdir(root)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        boundary.exit_now = orig
        os.chdir(cwd)
        for s, h in handlers.items():
            signal.signal(s, h)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def ok(argv, root: Path) -> subprocess.CompletedProcess:
    proc = cli(argv, root)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    """Inputs every case copies: a slide, its truth, patches, tiles + tile masks, a stitched mask, a GEM, GeoJSON."""
    import tifffile

    from csrefiner.demo.gem import write_gem
    from csrefiner.synth import EASY, nuclei_image

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from conftest import write_patches

    root = tmp_path_factory.mktemp("outputs-src")
    img, lbl = nuclei_image((256, 256), EASY, 3)
    tifffile.imwrite(root / "slide.tif", img)
    tifffile.imwrite(root / "gt.tif", lbl)
    write_patches(root / "patches", EASY, 2, 5, size=64)
    write_gem(root / "chip.gem.gz", lbl, 128, genes=5)
    ok(["tile", "--image", "slide.tif", "--out", "tiles", "--tile-size", 128, "--overlap", 32], root)
    ok(["segment", "--model", "watershed", "--input", "tiles", "--out", "masks"], root)
    ok(["segment", "--model", "watershed", "--input", "patches", "--out", "wsd"], root)
    ok(["stitch", "--manifest", "tiles/manifest.json", "--tiles", "masks", "--out", "mask.tif"], root)
    ok(["annotations", "to-geojson", "--mask", "patches/p-x0_y0_w64_h64-mask.tif", "--out", "objects.geojson"], root)
    (root / "suggested").mkdir()
    (root / "demo").mkdir()
    return root


@pytest.fixture
def work(src, tmp_path) -> Path:
    root = tmp_path / "w"
    shutil.copytree(src, root)
    return root


# -- the commands: argv for an output path, and the input each reads --------------------------------------------
COMMANDS = {
    "synth": (lambda o: ["synth", "--out", o, "--n", 1, "--size", 64], None),
    "tile": (lambda o: ["tile", "--image", "slide.tif", "--out", o, "--tile-size", 128, "--overlap", 32], "slide.tif"),
    "crop": (lambda o: ["crop", "--image", "slide.tif", "--mask", "gt.tif", "--out", o, "--size", 128], "gt.tif"),
    "segment": (lambda o: ["segment", "--model", "watershed", "--input", "patches", "--out", o], "patches"),
    "stitch": (lambda o: ["stitch", "--manifest", "tiles/manifest.json", "--tiles", "masks", "--out", o], "masks"),
    "evaluate": (lambda o: ["evaluate", "--gt", "patches", "--pred", "wsd", "--out", o], "patches"),
    "consensus": (lambda o: ["consensus", "--pred", "patches", "--pred", "wsd", "--out", o], "wsd"),
    "suggest": (
        lambda o: [
            "suggest",
            "--pred",
            "patches",
            "--pred",
            "wsd",
            "--image-dir",
            "patches",
            "--top",
            1,
            "--patch-size",
            0,
            "--out",
            o,
        ],
        "wsd",
    ),
    "to-geojson": (lambda o: ["annotations", "to-geojson", "--mask", "gt.tif", "--out", o], "gt.tif"),
    "to-masks": (
        lambda o: [
            "annotations",
            "to-masks",
            "--geojson",
            "objects.geojson",
            "--image",
            "patches/p-x0_y0_w64_h64-img.tif",
            "--with-image",
            "--out",
            o,
        ],
        "patches",
    ),
    "cgef": (lambda o: ["cgef", "--matrix", "chip.gem.gz", "--mask", "mask.tif", "--out", o], "chip.gem.gz"),
    "finetune": (
        lambda o: ["finetune", "--model", "cellpose", "--pretrained", "scratch", "--train", "patches", "--out", o],
        "patches",
    ),
    "demo-annotate": (
        lambda o: ["demo", "annotate", "--suggested", "suggested", "--data", "demo", "--out", o],
        "suggested",
    ),
    "export": (lambda o: ["export", "--mask", "mask.tif", "--geojson", o], "mask.tif"),
}
FILES_IN_OUT = {"to-masks"}  # --out is a folder that receives <key>-mask.tif: only that file can hit an input
FOLDER_INPUT = {name for name, (_, inp) in COMMANDS.items() if inp and "." not in inp} - FILES_IN_OUT
WRITERS = [c for c in COMMANDS if c not in ("finetune", "demo-annotate")]  # those cheap enough to run for real


def out_name(command: str) -> str:
    return {"stitch": "out.tif", "to-geojson": "out.geojson", "cgef": "out.gef", "export": "out.geojson"}.get(
        command, "out"
    )


def overlap_faults() -> list[Fault]:
    faults = []
    for name, (argv, inp) in COMMANDS.items():
        if inp is None:
            continue
        for force in ((), ("--force",)):
            tag = "+force" if force else ""
            faults.append(
                Fault(f"{name}:out-is-input{tag}", lambda r, a=argv, i=inp, f=force: [*a(i), *f], (inp, "is the input"))
            )
            if name not in FILES_IN_OUT:
                faults.append(
                    Fault(
                        f"{name}:out-contains-input{tag}",
                        lambda r, a=argv, f=force: [*a("."), *f],
                        ("contains the input",),
                    )
                )
            if name in FOLDER_INPUT:
                faults.append(
                    Fault(
                        f"{name}:out-inside-input{tag}",
                        lambda r, a=argv, i=inp, f=force: [*a(f"{i}/sub"), *f],
                        (f"{inp}/sub", "lies inside the input folder"),
                    )
                )
    return faults


def parent_file_faults() -> list[Fault]:
    def build(root, command, depth):
        (root / "afile").write_text("not a folder\n")
        return COMMANDS[command][0](f"afile/{'x/' * depth}{out_name(command)}")

    faults = [Fault(f"{c}:parent-is-file", lambda r, c=c: build(r, c, 0), ("afile",)) for c in WRITERS]
    faults.append(Fault("tile:grandparent-is-file", lambda r: build(r, "tile", 1), ("afile/x",)))
    faults.append(
        Fault(
            "demo-data:parent-is-file",
            lambda r: (r / "afile").write_text("x") and ["demo", "data", "--quick", "--out", "afile/out"],
            ("afile",),
        )
    )
    return faults


def multi_output_faults() -> list[Fault]:
    def stitch_bad_preview(root):
        (root / "afile").write_text("x")
        return [*COMMANDS["stitch"][0]("out.tif"), "--preview", "afile/p.png", "--report", "r.json"]

    return [
        Fault("stitch:failed-preview-removes-mask", stitch_bad_preview, ("afile",)),
        Fault(
            "demo-run:unknown-model-leaves-nothing",
            lambda r: ["demo", "run", "--quick", "--models", "foo", "--out", "run"],
            ("foo",),
        ),
    ]


def truncated(root: Path, tiled: bool) -> list[str]:
    """A TIFF cut in half (copy interrupted): the boundary's catch-all names it as damaged."""
    import tifffile

    from csrefiner.synth import EASY, nuclei_image

    img, _ = nuclei_image((512, 512), EASY, 1)
    tifffile.imwrite(root / "full.tif", img, **({"tile": (128, 128), "compression": "zlib"} if tiled else {}))
    data = (root / "full.tif").read_bytes()
    (root / "cut.tif").write_bytes(data[: len(data) // 2])
    (root / "full.tif").unlink()
    return ["tile", "--image", "cut.tif", "--out", "out", "--tile-size", 256, "--overlap", 16]


def boundary_faults() -> list[Fault]:
    """What escapes a command's own checks still ends as one line: usage errors and damaged reads."""
    return [
        Fault("evaluate:option-out-of-range", lambda r: [*COMMANDS["evaluate"][0]("out"), "--iou", 0], ("--iou",)),
        Fault(
            "tile:option-not-a-number", lambda r: [*COMMANDS["tile"][0]("out"), "--tile-size", "abc"], ("--tile-size",)
        ),
        Fault("segment:missing-option", lambda r: ["segment", "--input", "patches"], ("--out",)),
        Fault("unknown-command", lambda r: ["segmnet"], ("segmnet",)),
        Fault("tile:truncated-tiled-tiff", lambda r: truncated(r, True), ("cut.tif", "truncated")),
        Fault("tile:truncated-striped-tiff", lambda r: truncated(r, False), ("cut.tif", "truncated")),
    ]


CATALOGUE = overlap_faults() + parent_file_faults() + multi_output_faults() + boundary_faults()


@pytest.mark.parametrize("fault", CATALOGUE, ids=str)
def test_output_fault_fails_cleanly(fault, work):
    argv = fault.build(work)
    before = snapshot(work)
    assert_clean_failure(cli(argv, work), before, work, fault.names, fault.code)


# -- unwritable folder and full disk ----------------------------------------------------------------------------
@contextlib.contextmanager
def read_only(folder: Path):
    """A folder this process cannot write: a read-only bind mount as root (chmod does not stop root), else 0555."""
    folder.mkdir()
    if ROOT:
        subprocess.run(["mount", "--bind", folder, folder], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,ro,bind", folder, folder], check=True)
            yield "read-only file system"
        finally:
            subprocess.run(["umount", folder], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield "permission denied"
        finally:
            folder.chmod(0o755)


@contextlib.contextmanager
def full_disk(folder: Path):
    """A 64 KiB tmpfs filled to the last byte: every write there fails with ENOSPC."""
    if not ROOT:
        pytest.skip("DISK FULL CASES SKIPPED: mounting a tiny tmpfs needs root; run the catalogue as root (CI)")
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", folder], check=True)
    try:
        with contextlib.suppress(OSError), open(folder / "filler", "wb") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
        yield "no space left"
    finally:
        subprocess.run(["umount", folder], check=True)


DISK = {"unwritable": read_only, "disk-full": full_disk}


@pytest.mark.parametrize("kind", sorted(DISK))
@pytest.mark.parametrize("command", WRITERS)
def test_unwritable_or_full_target(command, kind, work):
    target = f"{kind}/{out_name(command)}"
    with DISK[kind](work / kind) as cause:
        before = snapshot(work)
        line = assert_clean_failure(cli(COMMANDS[command][0](target), work), before, work, (kind,))
        assert cause in line


# -- a disk that fills up half-way through an HDF5 write ----------------------------------------------------------
MID_WRITE = {  # the call that writes each HDF5 output, in a subprocess: were HDF5 to crash, pytest would survive
    "gef": "from csrefiner.stereo.cgef_writer import write_cgef as write",
    "h5ad": "from csrefiner.stereo.anndata_writer import write_h5ad as write",
}
MID_WRITE_SCRIPT = """
import errno, sys
from csrefiner.stereo.cellbin import build_cellbin
{imp}
m = build_cellbin(sys.argv[1], sys.argv[2], workdir=sys.argv[3])
try:
    write(m, sys.argv[4])
except OSError as exc:
    print(errno.errorcode[exc.errno], exc.filename)
"""


@pytest.fixture(scope="module")
def chip(tmp_path_factory) -> Path:
    """A GEM and mask whose GEF (~0.7 MB) and h5ad (~7 MB) outgrow a 64 KiB disk after the file is created."""
    import tifffile

    from csrefiner.demo.gem import write_gem
    from csrefiner.synth import EASY, nuclei_image

    root = tmp_path_factory.mktemp("outputs-chip")
    _, lbl = nuclei_image((1024, 1024), EASY, 4)
    tifffile.imwrite(root / "mask.tif", lbl)
    write_gem(root / "chip.gem.gz", lbl, 512, genes=100)
    return root


@pytest.mark.parametrize("kind", sorted(MID_WRITE))
def test_disk_filling_mid_hdf5_write(kind, chip, tmp_path):
    """HDF5 crashes (SIGSEGV in h5py's destructors) when the disk fills mid-write: the writer must report ENOSPC
    naming the output, print no traceback, and leave nothing on the disk."""
    if not ROOT:
        pytest.skip("DISK FULL CASES SKIPPED: mounting a tiny tmpfs needs root; run the catalogue as root (CI)")
    disk, target = tmp_path / "disk", tmp_path / "disk" / f"out.{kind}"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", disk], check=True)
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                MID_WRITE_SCRIPT.format(imp=MID_WRITE[kind]),
                chip / "chip.gem.gz",
                chip / "mask.tif",
                tmp_path,
                target,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        left = sorted(p.name for p in disk.iterdir())
    finally:
        subprocess.run(["umount", disk], check=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["ENOSPC", str(target)], proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert not left, left


# -- signals mid-write (real processes) -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """Inputs large enough that each command is still writing when the signal comes."""
    import tifffile

    from csrefiner.demo.gem import write_gem
    from csrefiner.synth import EASY, nuclei_image

    root = tmp_path_factory.mktemp("outputs-big")
    img, lbl = nuclei_image((1024, 1024), EASY, 4)
    tifffile.imwrite(root / "slide.tif", img)
    tifffile.imwrite(root / "mask.tif", lbl)
    write_gem(root / "chip.gem.gz", lbl, 512, genes=100)
    ok(["tile", "--image", "slide.tif", "--out", "tiles", "--tile-size", 128, "--overlap", 16], root)
    return root


SIGNAL_RUNS = {
    "segment": ["segment", "--model", "watershed", "--input", "tiles", "--out", "out"],
    "tile": ["tile", "--image", "slide.tif", "--out", "out", "--tile-size", 64, "--overlap", 8],
    "cgef": ["cgef", "--matrix", "chip.gem.gz", "--mask", "mask.tif", "--out", "out.gef", "--h5ad", "out.h5ad"],
}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
@pytest.mark.parametrize("command", sorted(SIGNAL_RUNS))
def test_signal_mid_write_leaves_nothing(command, sig, big, tmp_path):
    """Signalled while its temp output exists: exit 128+sig, no temp, inputs untouched, nothing published.
    A signal that lands after the output was published (a loaded machine) is retried on a fresh copy."""
    for attempt in range(3):
        root = tmp_path / f"w{attempt}"
        shutil.copytree(big, root)
        before = snapshot(root)
        proc = signal_mid_run(SIGNAL_RUNS[command], root, sig, lambda r: bool(partials(r)))
        assert not partials(root)
        after = snapshot(root)
        assert {k: v for k, v in after.items() if k in before} == before  # inputs byte-identical
        if after.keys() == before.keys():
            assert proc.returncode == 128 + sig, proc.returncode
            return
        assert proc.returncode in (0, 128 + sig), proc.returncode  # finished first: a whole output, try again
    pytest.fail(f"the signal never landed while {command} was writing (3 tries)")


# -- what succeeds: modes and reruns ----------------------------------------------------------------------------
RERUN = ("tile", "segment", "stitch", "evaluate", "crop", "cgef", "synth", "export")


@pytest.fixture(scope="module")
def twice(src, tmp_path_factory) -> dict:
    """Each command of RERUN run twice under umask 027."""
    root = tmp_path_factory.mktemp("outputs-twice")
    for item in src.iterdir():
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, root / item.name)
    old = os.umask(0o027)
    try:
        for run in ("a", "b"):
            for command in RERUN:
                ok(COMMANDS[command][0](f"{run}-{command}-{out_name(command)}"), root)
    finally:
        os.umask(old)
    return {"root": root}


def test_outputs_get_the_modes_the_umask_gives(twice):
    wrong = []
    for path in twice["root"].rglob("*"):
        if path.name.startswith(("a-", "b-")) or path.parent.name.startswith(("a-", "b-")):
            want = 0o750 if path.is_dir() else 0o640
            if path.stat().st_mode & 0o777 != want:
                wrong.append(f"{path.name}: {oct(path.stat().st_mode & 0o777)} (want {oct(want)})")
    assert not wrong, wrong


@pytest.mark.parametrize("command", RERUN)
def test_reruns_are_byte_identical(command, twice):
    a, b = (twice["root"] / f"{run}-{command}-{out_name(command)}" for run in "ab")
    if a.is_file():
        assert a.read_bytes() == b.read_bytes()
        return
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    differ = [str(p) for p in files_a if (a / p).read_bytes() != (b / p).read_bytes()]
    assert not differ, differ


def test_the_guard_names_a_symlinked_input(work):
    (work / "link.tif").symlink_to("slide.tif")
    before = snapshot(work)
    proc = cli(["tile", "--image", "link.tif", "--out", "slide.tif", "--force"], work)
    assert_clean_failure(proc, before, work, ("slide.tif", "link.tif"))
