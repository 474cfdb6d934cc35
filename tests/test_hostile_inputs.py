"""Issue 14: bad or hostile inputs to every sub-command (classes 1, 2, 4 and 5 of its list, and
more): each must end with exit 2 and one line ``eie: error: ...`` on stderr, no traceback, and
leave every file and directory as it was (hashed before and after). None of them may reach a
simulator, a build or a training run: every case is refused while the options and paths are
checked.

The cases run in this process (the ``cli`` fixture) in one shared directory, the *world*
(images, models, inputs, a user's directory, links...), which no case may change. The working
directory is the world, so that a default output (``build/bnn``, ``out/demo``) would show up in
the tree too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil

import numpy as np
import pytest

from eie.app.cli import main

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ----------------------------------------------------------------------------- the world

def _make_world(d):
    rng = np.random.default_rng(14)
    # an EIE model and its image; a BNN model and its image
    np.savez(d / "m.npz", W0=(0.3 * rng.standard_normal((11, 14))).astype(np.float32),
             b0=(0.1 * rng.standard_normal(11)).astype(np.float32),
             W1=(0.3 * rng.standard_normal((6, 11))).astype(np.float32))
    assert main(["compress", str(d / "m.npz"), "-o", str(d / "img"), "--pes", "3"]) == 0
    from eie.sw.bnn.float_model import random_model, save_model

    save_model(random_model([12, 8, 4], rng), d / "b.npz")
    assert main(["bnn", "compile", str(d / "b.npz"), "-o", str(d / "bimg")]) == 0
    np.save(d / "x.npy", rng.uniform(-1, 1, (2, 14)).astype(np.float32))
    np.save(d / "xb.npy", rng.integers(0, 2, (2, 12), dtype=np.uint8))
    # weights every codebook entry of which rounds to 0
    np.savez(d / "tiny.npz", W0=(1e-30 * rng.standard_normal((11, 14))).astype(np.float64),
             W1=rng.standard_normal((6, 11)).astype(np.float32))
    # a .npy named .npz, a .npz named .npy
    with open(d / "fake.npz", "wb") as f:
        np.save(f, np.zeros(3))
    with open(d / "xz.npy", "wb") as f:
        np.savez(f, x=np.zeros((2, 14)))
    # a user's files: a plain file, a directory, one with another program's manifest.json
    (d / "file.txt").write_text("a user's file\n")
    (d / "userdir").mkdir()
    (d / "userdir" / "a.txt").write_text("a user's notes\n")
    (d / "foreign").mkdir()
    (d / "foreign" / "manifest.json").write_text('{"name": "another program"}\n')
    (d / "foreign" / "b.txt").write_text("b\n")
    # images with a file of the user's added
    shutil.copytree(d / "img", d / "imgx")
    (d / "imgx" / "notes.txt").write_text("mine\n")
    shutil.copytree(d / "bimg", d / "bimgx")
    (d / "bimgx" / "notes.txt").write_text("mine\n")
    # a manifest nested too deeply for the JSON parser, as an image and as a build's core.json
    deep = "[" * 100_000 + "]" * 100_000
    (d / "deep").mkdir()
    (d / "deep" / "manifest.json").write_text(deep)
    # `eie build` outputs: damaged core.json (not JSON, not an object, nested too deeply)
    for name, text in (("corrupt", "{not json"), ("listcore", "[1, 2]"), ("deepcore", deep)):
        (d / name).mkdir()
        (d / name / "core.json").write_text(text)
        (d / name / "report.json").write_text('{"board": "icebreaker", "bitstream": "top.bin"}')
    # something that looks like a demo output but holds a user's file too
    (d / "fakedemo").mkdir()
    (d / "fakedemo" / "report.json").write_text('{"config": {}, "eie": {}, "bnn": {}}')
    (d / "fakedemo" / "user.txt").write_text("mine\n")
    # a BNN manifest that lists a file outside its directory
    (d / "evil").mkdir()
    (d / "evil" / "manifest.json").write_text(json.dumps(
        {"format": "eie-bnn-image", "layers": [{"weight_files": ["../file.txt"]}]}))
    # the model inside the directory given as -o
    (d / "mdir").mkdir()
    shutil.copy(d / "m.npz", d / "mdir" / "m.npz")
    # links
    os.link(d / "x.npy", d / "hardx.npy")
    (d / "link").symlink_to(d / "img")
    (d / "blink").symlink_to(d / "bimg")
    (d / "flink").symlink_to(d / "file.txt")
    # where `eie generate -o gen.v` would put its memory map: a directory
    (d / "gen.json").mkdir()
    # not a regular file (a named pipe here: a device such as /dev/null would be the same
    # case, but a regression must not be able to replace one)
    os.mkfifo(d / "fifo")
    # inputs (eie.sw.inputs): no samples; two arrays saved into one file; a header describing
    # 50 TiB (loading it was a MemoryError traceback); Python objects (a pickle)
    np.save(d / "x0.npy", np.zeros((0, 14), np.float32))
    np.save(d / "xb0.npy", np.zeros((0, 12), np.uint8))
    with open(d / "x2.npy", "wb") as f:
        np.save(f, np.zeros((2, 14), np.float32))
        np.save(f, np.ones((2, 14), np.float32))
    for name, descr, n_in in (("xhuge.npy", "<f4", 14), ("xbhuge.npy", "|u1", 12)):
        with open(d / name, "wb") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": descr, "fortran_order": False, "shape": (10 ** 12, n_in)})
            f.write(bytes(64))
    np.save(d / "xobj.npy", np.array([[1] * 14], dtype=object), allow_pickle=True)
    np.save(d / "xbf.npy", rng.integers(0, 2, (2, 12)).astype(np.float32))
    np.save(d / "xpix.npy", rng.integers(0, 256, (2, 14), dtype=np.uint8))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("world")
    _make_world(d)
    return d


def tree(d) -> dict[str, str]:
    """Every path under ``d``: a file's SHA-256, a link's target, ``dir`` for a directory."""
    out = {}
    for root, dirs, files in os.walk(d, followlinks=False):
        for name in dirs + files:
            p = os.path.join(root, name)
            rel = os.path.relpath(p, d)
            if os.path.islink(p):
                out[rel] = "link -> " + os.readlink(p)
            elif os.path.isdir(p):
                out[rel] = "dir"
            elif not os.path.isfile(p):
                out[rel] = f"special {os.stat(p).st_mode:o}"
            else:
                with open(p, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out


# ----------------------------------------------------------------------------- the cases
# (id, argv, a part of the message). "{d}" is the world directory; relative paths are in it.
# A module-level table on purpose: tests/test_markers.py scans test functions, and none of these
# reaches a simulator or a build.

CASES = [
    # --- eie compress: class 1 (never replace what is not ours), 2, 4
    ("compress-userdir", ["compress", "m.npz", "-o", "userdir", "--pes", "2"],
     "is not empty and is not an EIE image"),
    ("compress-foreign-manifest", ["compress", "m.npz", "-o", "foreign", "--pes", "2"],
     "is not an EIE image"),
    ("compress-image-plus-user-file", ["compress", "m.npz", "-o", "imgx", "--pes", "2"],
     "also holds files it does not list (notes.txt)"),
    ("compress-onto-bnn-image", ["compress", "m.npz", "-o", "bimg", "--pes", "2"],
     "is not an EIE image"),
    ("compress-onto-deep-manifest", ["compress", "m.npz", "-o", "deep", "--pes", "2"],
     "is not an EIE image"),
    ("compress-holds-its-model", ["compress", "mdir/m.npz", "-o", "mdir", "--pes", "2"],
     "is not an EIE image"),
    ("compress-onto-file", ["compress", "m.npz", "-o", "file.txt", "--pes", "2"],
     "exists and is not a directory"),
    ("compress-parent-is-file", ["compress", "m.npz", "-o", "file.txt/img", "--pes", "2"],
     "file.txt is not a directory"),
    ("compress-parent-missing", ["compress", "m.npz", "-o", "nope/img", "--pes", "2"],
     "does not exist"),
    ("compress-unwritable", ["compress", "m.npz", "-o", "/proc/eie-img", "--pes", "2"],
     "not writable"),
    ("compress-symlink", ["compress", "m.npz", "-o", "link", "--pes", "2"], "symbolic link"),
    ("compress-cwd", ["compress", "m.npz", "-o", ".", "--pes", "2"], "current"),
    ("compress-npy-named-npz", ["compress", "fake.npz", "-o", "new", "--pes", "2"],
     "is a .npy array, not a .npz archive"),
    ("compress-calibrate-npz", ["compress", "m.npz", "-o", "new", "--pes", "2", "--calibrate",
                                "xz.npy"], "is a .npz archive, not a .npy array"),
    ("compress-pes-5000", ["compress", "m.npz", "-o", "new", "--pes", "5000"], "1..256"),
    ("compress-pes-257", ["compress", "m.npz", "-o", "new", "--pes", "257"], "1..256"),
    ("compress-underflow", ["compress", "tiny.npz", "-o", "new", "--pes", "2"],
     "every codebook entry rounds to 0"),
    ("compress-calibrate-empty", ["compress", "m.npz", "-o", "new", "--pes", "2", "--calibrate",
                                  "x0.npy"], "holds no samples (shape (0, 14))"),
    ("compress-calibrate-huge-header", ["compress", "m.npz", "-o", "new", "--pes", "2",
                                        "--calibrate", "xhuge.npy"], "the file ends early"),
    ("compress-calibrate-objects", ["compress", "m.npz", "-o", "new", "--pes", "2",
                                    "--calibrate", "xobj.npy"], "holds Python objects"),
    # --- eie golden / inspect
    ("golden-empty-batch", ["golden", "img", "--input", "x0.npy", "-o", "y.npy"],
     "holds no samples (shape (0, 14))"),
    ("golden-two-arrays-in-one-file", ["golden", "img", "--input", "x2.npy", "-o", "y.npy"],
     "bytes after its (2, 14) array"),
    ("golden-huge-header", ["golden", "img", "--input", "xhuge.npy", "-o", "y.npy"],
     "the file ends early"),
    ("golden-objects", ["golden", "img", "--input", "xobj.npy", "-o", "y.npy"],
     "holds Python objects"),
    ("golden-input-dir", ["golden", "img", "--input", "userdir", "-o", "y.npy"],
     "is a directory; give a .npy file"),
    ("golden-input-missing", ["golden", "img", "--input", "nope.npy", "-o", "y.npy"],
     "input nope.npy does not exist"),
    ("golden-o-dir", ["golden", "img", "--input", "x.npy", "-o", "userdir"], "is a directory"),
    ("golden-o-image", ["golden", "img", "--input", "x.npy", "-o", "img"], "is a directory"),
    ("golden-parent-is-file", ["golden", "img", "--input", "x.npy", "-o", "file.txt/y.npy"],
     "file.txt is not a directory"),
    ("golden-parent-missing", ["golden", "img", "--input", "x.npy", "-o", "nope/y.npy"],
     "does not exist"),
    ("golden-unwritable", ["golden", "img", "--input", "x.npy", "-o", "/proc/eie-y.npy"],
     "not writable"),
    ("golden-fifo", ["golden", "img", "--input", "x.npy", "-o", "fifo"], "not a regular file"),
    ("golden-symlink", ["golden", "img", "--input", "x.npy", "-o", "flink"], "symbolic link"),
    ("golden-o-is-input", ["golden", "img", "--input", "x.npy", "-o", "x.npy"],
     "is also the input"),
    ("golden-o-is-input-hard-link", ["golden", "img", "--input", "x.npy", "-o", "hardx.npy"],
     "is also the input"),
    ("golden-o-in-image", ["golden", "img", "--input", "x.npy", "-o", "img/manifest.json"],
     "part of the input"),
    ("golden-input-npz", ["golden", "img", "--input", "xz.npy", "-o", "y.npy"],
     "is a .npz archive"),
    ("golden-deep-manifest", ["golden", "deep", "--input", "x.npy", "-o", "y.npy"], "manifest"),
    ("inspect-deep-manifest", ["inspect", "deep"], "manifest"),
    ("inspect-user-dir", ["inspect", "userdir"], "manifest.json"),
    # --- eie generate
    ("generate-o-dir", ["generate", "--pes", "2", "-o", "userdir"], "is a directory"),
    ("generate-map-is-dir", ["generate", "--pes", "2", "-o", "gen.v"], "is a directory"),
    ("generate-parent-missing", ["generate", "--pes", "2", "-o", "nope/e.v"], "does not exist"),
    ("generate-name-not-ascii", ["generate", "--pes", "1", "--name", "\u015dtop", "-o", "u.v"],
     "not a valid Verilog module name"),
    ("generate-symlink", ["generate", "--pes", "2", "-o", "flink"], "symbolic link"),
    ("generate-json", ["generate", "--pes", "2", "-o", "e.json"], "memory map"),
    ("generate-deep-image", ["generate", "--image", "deep", "-o", "e.v"], "manifest"),
    ("generate-name-keyword", ["generate", "--pes", "2", "--name", "module", "-o", "k.v"],
     "--name 'module' is a reserved word of Verilog/SystemVerilog"),
    ("generate-name-sv-keyword", ["generate", "--pes", "2", "--name", "logic", "-o", "k.v"],
     "--name 'logic' is a reserved word"),
    ("generate-act-frac-contradicts-image", ["generate", "--image", "img", "--act-frac", "4",
                                             "-o", "e.v"],
     "--act-frac 4 contradicts the image, which uses act_frac 8"),
    # --- eie run (refused before any simulator runs)
    ("run-o-dir", ["run", "img", "--input", "x.npy", "-o", "userdir"], "is a directory"),
    ("run-o-is-stats", ["run", "img", "--input", "x.npy", "-o", "y.npy", "--stats", "y.npy"],
     "same path"),
    ("run-vcd-is-o", ["run", "img", "--input", "x.npy", "-o", "y.npy", "--vcd", "y.npy"],
     "same path"),
    ("run-o-is-input", ["run", "img", "--input", "x.npy", "-o", "x.npy"], "is also the input"),
    ("run-build-dir-file", ["run", "img", "--input", "x.npy", "-o", "y.npy", "--build-dir",
                            "file.txt"], "not a directory"),
    ("run-build-dir-in-image", ["run", "img", "--input", "x.npy", "-o", "y.npy", "--build-dir",
                                "img/cache"], "part of the input"),
    ("run-empty-batch", ["run", "img", "--input", "x0.npy", "-o", "y.npy", "--sim", "model"],
     "holds no samples"),
    ("run-huge-header", ["run", "img", "--input", "xhuge.npy", "-o", "y.npy", "--sim", "model"],
     "the file ends early"),
    ("run-act-frac-contradicts-image", ["run", "img", "--input", "x.npy", "-o", "y.npy",
                                        "--sim", "model", "--act-frac", "4"],
     "--act-frac 4 contradicts the image, which uses act_frac 8"),
    ("run-pixels-without-raw", ["run", "img", "--input", "xpix.npy", "-o", "y.npy", "--sim",
                                "model"], "as x / 255"),
    ("run-stats-parent-missing", ["run", "img", "--input", "x.npy", "-o", "y.npy", "--stats",
                                  "nope/s.json", "--sim", "model"], "does not exist"),
    # --- eie bnn compile: class 1 and 2
    ("bnn-compile-userdir", ["bnn", "compile", "b.npz", "-o", "userdir"],
     "is not empty and is not a BNN image"),
    ("bnn-compile-foreign", ["bnn", "compile", "b.npz", "-o", "foreign"], "not a BNN image"),
    ("bnn-compile-onto-eie-image", ["bnn", "compile", "b.npz", "-o", "img"], "not a BNN image"),
    ("bnn-compile-image-plus-user-file", ["bnn", "compile", "b.npz", "-o", "bimgx"],
     "also holds files it does not list (notes.txt)"),
    ("bnn-compile-manifest-lists-outside", ["bnn", "compile", "b.npz", "-o", "evil"],
     "not a BNN image"),
    ("bnn-compile-onto-file", ["bnn", "compile", "b.npz", "-o", "file.txt"],
     "exists and is not a directory"),
    ("bnn-compile-parent-is-file", ["bnn", "compile", "b.npz", "-o", "file.txt/img"],
     "is not a directory"),
    ("bnn-compile-symlink", ["bnn", "compile", "b.npz", "-o", "blink"], "symbolic link"),
    ("bnn-compile-unwritable", ["bnn", "compile", "b.npz", "-o", "/proc/eie-bimg"],
     "not writable"),
    ("bnn-compile-npy-named-npz", ["bnn", "compile", "fake.npz", "-o", "new"],
     "is a .npy array"),
    # --- eie bnn golden
    ("bnn-golden-o-dir", ["bnn", "golden", "bimg", "--input", "xb.npy", "-o", "userdir"],
     "is a directory"),
    ("bnn-golden-o-image", ["bnn", "golden", "bimg", "--input", "xb.npy", "-o", "bimg"],
     "is a directory"),
    ("bnn-golden-parent-is-file", ["bnn", "golden", "bimg", "--input", "xb.npy", "-o",
                                   "file.txt/y.npy"], "is not a directory"),
    ("bnn-golden-unwritable", ["bnn", "golden", "bimg", "--input", "xb.npy", "-o",
                               "/proc/eie-y.npy"], "not writable"),
    ("bnn-golden-o-is-input", ["bnn", "golden", "bimg", "--input", "xb.npy", "-o", "xb.npy"],
     "is also the input"),
    ("bnn-golden-input-npz", ["bnn", "golden", "bimg", "--input", "xz.npy", "-o", "y.npy"],
     "is a .npz archive"),
    ("bnn-golden-empty-batch", ["bnn", "golden", "bimg", "--input", "xb0.npy", "-o", "y.npy"],
     "holds no samples (shape (0, 12))"),
    ("bnn-golden-huge-header", ["bnn", "golden", "bimg", "--input", "xbhuge.npy", "-o",
                                "y.npy"], "the file ends early"),
    ("bnn-golden-float-bits", ["bnn", "golden", "bimg", "--input", "xbf.npy", "-o", "y.npy"],
     "has dtype float32 but bits are integers 0 or 1"),
    ("bnn-golden-deep-manifest", ["bnn", "golden", "deep", "--input", "xb.npy", "-o", "y.npy"],
     "manifest"),
    # --- eie bnn run: options and paths before any directory (build/bnn) is made
    ("bnn-run-in-depth-0", ["bnn", "run", "bimg", "--input", "xb.npy", "-o", "y.npy",
                            "--in-depth", "0"], "input FIFO depth is 0"),
    ("bnn-run-out-depth-0", ["bnn", "run", "bimg", "--input", "xb.npy", "-o", "y.npy",
                             "--out-depth", "0"], "output FIFO depth is 0"),
    ("bnn-run-backpressure", ["bnn", "run", "bimg", "--input", "xb.npy", "-o", "y.npy",
                              "--backpressure", "2"], "--backpressure"),
    ("bnn-run-two-arrays-in-one-file", ["bnn", "run", "bimg", "--input", "x2.npy", "-o",
                                        "y.npy"], "has shape (2, 14) but the image's first layer"),
    ("bnn-run-objects", ["bnn", "run", "bimg", "--input", "xobj.npy", "-o", "y.npy"],
     "holds Python objects"),
    ("bnn-run-o-dir", ["bnn", "run", "bimg", "--input", "xb.npy", "-o", "userdir"],
     "is a directory"),
    ("bnn-run-stats-is-o", ["bnn", "run", "bimg", "--input", "xb.npy", "-o", "y.npy",
                            "--stats", "y.npy"], "same path"),
    ("bnn-run-build-dir-file", ["bnn", "run", "bimg", "--input", "xb.npy", "-o", "y.npy",
                                "--build-dir", "file.txt"], "not a directory"),
    # --- eie bnn generate: class 1 (the Verilog overwritten by the JSON) and 2
    ("bnn-generate-map-is-o", ["bnn", "generate", "bimg", "-o", "a.v", "--memory-map", "a.v"],
     "same path"),
    ("bnn-generate-o-dir", ["bnn", "generate", "bimg", "-o", "userdir"], "is a directory"),
    ("bnn-generate-map-dir", ["bnn", "generate", "bimg", "-o", "a.v", "--memory-map",
                              "userdir"], "is a directory"),
    ("bnn-generate-map-in-image", ["bnn", "generate", "bimg", "-o", "a.v", "--memory-map",
                                   "bimg/manifest.json"], "part of the input"),
    ("bnn-generate-o-in-image", ["bnn", "generate", "bimg", "-o", "bimg/l0_pe0_w.hex"],
     "part of the input"),
    ("bnn-generate-in-depth-0", ["bnn", "generate", "bimg", "-o", "a.v", "--in-depth", "0"],
     "input FIFO depth is 0"),
    # --- eie bench
    ("bench-table3-json-dir", ["bench", "table3", "--json", "userdir"], "is a directory"),
    ("bench-table3-json-parent-missing", ["bench", "table3", "--json", "nope/t.json"],
     "does not exist"),
    ("bench-table3-json-unwritable", ["bench", "table3", "--json", "/proc/eie-t.json"],
     "not writable"),
    ("bench-table3-build-dir-file", ["bench", "table3", "--build-dir", "file.txt"],
     "not a directory"),
    ("bench-sweep-plot-parent-file", ["bench", "sweep", "fifo", "--plot", "file.txt/p.png"],
     "is not a directory"),
    # --- eie build (refused before Yosys)
    ("build-out-userdir", ["build", "--board", "icebreaker", "--out", "userdir"],
     "is not empty and is not an `eie build` output"),
    ("build-out-file", ["build", "--board", "icebreaker", "--out", "file.txt"],
     "exists and is not a directory"),
    ("build-out-symlink", ["build", "--board", "icebreaker", "--out", "link"], "symbolic link"),
    ("build-out-parent-missing", ["build", "--board", "icebreaker", "--out", "nope/b"],
     "does not exist"),
    # --- eie board run: a damaged --build (refused before the port is opened)
    ("board-run-corrupt-core", ["board", "run", "img", "--input", "x.npy", "-o", "y.npy",
                                "--port", "/dev/null-eie", "--build", "corrupt"],
     "core.json is not a JSON object"),
    ("board-run-list-core", ["board", "run", "img", "--input", "x.npy", "-o", "y.npy",
                             "--port", "/dev/null-eie", "--build", "listcore"],
     "core.json is not a JSON object"),
    ("board-run-deep-core", ["board", "run", "img", "--input", "x.npy", "-o", "y.npy",
                             "--port", "/dev/null-eie", "--build", "deepcore"],
     "core.json is not a JSON object"),
    ("board-run-deep-manifest", ["board", "run", "deep", "--input", "x.npy", "-o", "y.npy",
                                 "--port", "/dev/null-eie"], "nest too deeply"),
    ("build-deep-image", ["build", "--board", "icebreaker", "--image", "deep", "--out", "newb"],
     "nest too deeply"),
    ("board-run-empty-batch", ["board", "run", "img", "--input", "x0.npy", "-o", "y.npy",
                               "--port", "/dev/null-eie"], "holds no samples"),
    ("board-run-huge-header", ["board", "run", "img", "--input", "xhuge.npy", "-o", "y.npy",
                               "--port", "/dev/null-eie"], "the file ends early"),
    ("board-run-bnn-empty-batch", ["board", "run", "bimg", "--input", "xb0.npy", "-o", "y.npy",
                                   "--port", "/dev/null-eie"], "holds no samples"),
    ("board-run-o-dir", ["board", "run", "img", "--input", "x.npy", "-o", "userdir",
                         "--port", "/dev/null-eie"], "is a directory"),
    ("board-run-o-is-input", ["board", "run", "img", "--input", "x.npy", "-o", "x.npy",
                              "--port", "/dev/null-eie"], "is also the input"),
    ("board-run-stats-is-o", ["board", "run", "img", "--input", "x.npy", "-o", "y.npy",
                              "--stats", "y.npy", "--port", "/dev/null-eie"], "same path"),
    ("board-run-baud-0", ["board", "run", "img", "--input", "x.npy", "-o", "y.npy",
                          "--port", "/dev/null-eie", "--baud", "0"], "--baud 0"),
    # --- eie demo (refused before any training)
    ("demo-out-userdir", ["demo", "--quick", "--out", "userdir"],
     "is not empty and is not an `eie demo` output"),
    ("demo-out-fake-report", ["demo", "--quick", "--out", "fakedemo"],
     "also holds files it does not list (user.txt)"),
    ("demo-out-file", ["demo", "--quick", "--out", "file.txt"], "exists and is not a directory"),
    ("demo-out-symlink", ["demo", "--quick", "--out", "link"], "symbolic link"),
    ("demo-bad-images", ["demo", "--images", "0"], "--images 0"),
    # --- eie bnn train (refused before any training)
    ("bnn-train-weights-bad", ["bnn", "train", "-o", "m.npz", "--weights", "W3"],
     "'W3' is not a weight precision"),
    ("bnn-train-weights-count", ["bnn", "train", "-o", "m.npz", "--weights", "W1,W2"],
     "gives 2 precisions but the network has 4 layers"),
    ("bnn-train-epochs-negative", ["bnn", "train", "-o", "m.npz", "--epochs", "-1"],
     "--epochs is -1"),
    ("bnn-train-shape-pixels", ["bnn", "train", "-o", "m.npz", "--shape", "100,10"],
     "the digits have 784 pixels"),
    ("bnn-train-out-dir", ["bnn", "train", "-o", "userdir"], "is a directory"),
    # --- eie verify (refused before any drawing, build or simulation)
    ("verify-configs-0", ["verify", "--configs", "0"], "--configs 0"),
    ("verify-seed-negative", ["verify", "--seed", "-1"], "--seed -1"),
    ("verify-bnn-max-pes", ["verify", "--engine", "bnn", "--max-pes", "8"],
     "--max-pes is for --engine eie"),
    ("verify-max-pes-0", ["verify", "--max-pes", "0"], "--max-pes 0"),
    ("verify-min-pes-0", ["verify", "--min-pes", "0"], "--min-pes 0"),
    ("verify-min-above-max", ["verify", "--min-pes", "17", "--max-pes", "16"],
     "--min-pes 17: choose 1..16"),
    ("verify-bnn-min-pes", ["verify", "--engine", "bnn", "--min-pes", "2"],
     "--min-pes is for --engine eie"),
    ("verify-only-bad", ["verify", "--only", "x"], "--only 'x'"),
    ("verify-json-dir", ["verify", "--json", "userdir"], "is a directory"),
    ("verify-keep-file", ["verify", "--keep", "file.txt"], "exists and is not a directory"),
    # --- eie board program: not a build, or one without its bitstream (refused before any
    # programmer is looked for)
    ("board-program-userdir", ["board", "program", "userdir"], "is not an `eie build` output"),
    ("board-program-missing", ["board", "program", "nope"], "is not a directory"),
    ("board-program-file", ["board", "program", "file.txt"], "is not a directory"),
    ("board-program-no-bitstream", ["board", "program", "corrupt"],
     "has no top.bin to load onto icebreaker"),
    # --- eie build --weights (the BNN core's precisions; refused before the memory map is made)
    ("build-weights-bad", ["build", "--board", "icebreaker", "--design", "bnn", "--weights", "W3",
                           "--out", "newb"], "'W3' is not a weight precision"),
    ("build-weights-count", ["build", "--board", "icebreaker", "--design", "bnn", "--weights",
                             "W1,W2,W1", "--out", "newb"],
     "gives 3 precisions but the network has 4 layers"),
    ("build-weights-empty", ["build", "--board", "ulx3s-85f", "--design", "bnn", "--weights", "",
                             "--out", "newb"], "gives 0 precisions but the network has 4 layers"),
    ("build-weights-bare-w", ["build", "--board", "ulx3s-85f", "--design", "bnn", "--weights",
                              "W2,W,W2,W2", "--out", "newb"], "'W' is not a weight precision"),
    ("build-weights-number", ["build", "--board", "ulx3s-85f", "--design", "bnn", "--weights",
                              "4", "--out", "newb"], "'4' is not a weight precision"),
    ("build-weights-eie", ["build", "--board", "icebreaker", "--weights", "W2", "--out", "newb"],
     "--weights W2 applies to --design bnn only"),
    ("build-weights-ram", ["build", "--board", "icebreaker", "--design", "ram", "--weights", "W1",
                           "--out", "newb"], "applies to --design bnn only"),
    ("build-weights-with-image", ["build", "--board", "icebreaker", "--design", "bnn", "--image",
                                  "bimg", "--weights", "W2", "--out", "newb"],
     "--weights is for a build without --image"),
    ("build-weights-out-userdir", ["build", "--board", "icebreaker", "--design", "bnn",
                                   "--weights", "W2", "--out", "userdir"],
     "is not empty and is not an `eie build` output"),
    # --- a .npz archive named .npy and the reverse: refused as inputs (README, "Inputs")
    ("bnn-compile-npz-named-npy", ["bnn", "compile", "xz.npy", "-o", "new"],
     "MODEL.npz xz.npy is a .npz archive named .npy; rename it to xz.npz"),
    ("golden-input-npy-named-npz", ["golden", "img", "--input", "fake.npz", "-o", "y.npy"],
     "--input fake.npz is a .npy array named .npz; rename it to fake.npy"),
    # --- an array output (-o Y.npy) named otherwise: a .npy array named .npz, which --input
    # then refused ("is a .npy array named .npz"), no suffix, another format's; refused before
    # any work by every command that writes one
    ("golden-o-npz", ["golden", "img", "--input", "x.npy", "-o", "o.npz"],
     "-o o.npz names a .npz archive, but the output is one array in .npy format (eie's --input "
     "refuses such a file; a .npz name promises an archive); give -o o.npy"),
    ("golden-o-no-suffix", ["golden", "img", "--input", "x.npy", "-o", "y"],
     "-o y must end in .npy: the output is one array in .npy format; give -o y.npy"),
    ("golden-o-txt", ["golden", "img", "--input", "x.npy", "-o", "new.txt"],
     "-o new.txt must end in .npy: the output is one array in .npy format, not .txt; give -o "
     "new.npy"),
    ("run-o-npz", ["run", "img", "--input", "x.npy", "-o", "r.npz", "--sim", "model"],
     "-o r.npz names a .npz archive"),
    ("run-o-no-suffix", ["run", "img", "--input", "x.npy", "-o", "r", "--sim", "model"],
     "-o r must end in .npy"),
    ("bnn-golden-o-npz", ["bnn", "golden", "bimg", "--input", "xb.npy", "-o", "o.npz"],
     "-o o.npz names a .npz archive"),
    ("bnn-run-o-no-suffix", ["bnn", "run", "bimg", "--input", "xb.npy", "-o", "o",
                             "--sim", "amaranth"], "-o o must end in .npy"),
    ("board-run-o-npz", ["board", "run", "img", "--input", "x.npy", "-o", "o.npz",
                         "--port", "/dev/null-eie"], "-o o.npz names a .npz archive"),
    # --- eie demo: a seed out of range and a bad --bnn-fold, refused before any training
    ("demo-seed-negative", ["demo", "--quick", "--seed", "-1", "--out", "newdemo"],
     "--seed -1 is out of range"),
    ("demo-bnn-fold-abc", ["demo", "--quick", "--bnn-fold", "abc", "--out", "newdemo"],
     "--bnn-fold 'abc' does not fold the TFC"),
    # --- eie bnn train: -o not a .npz (it replaced a user's x.npy with a zip), a seed out of
    # range, --save-test into another output or under a missing directory
    ("bnn-train-o-npy", ["bnn", "train", "-o", "x.npy"], "-o x.npy must end in .npz"),
    ("bnn-train-o-txt", ["bnn", "train", "-o", "file.txt"], "-o file.txt must end in .npz"),
    ("bnn-train-o-json-in-demo", ["bnn", "train", "-o", "fakedemo/report.json"],
     "must end in .npz"),
    ("bnn-train-seed-negative", ["bnn", "train", "-o", "new.npz", "--seed", "-3"],
     "--seed -3 is out of range"),
    ("bnn-train-save-test-eie-image", ["bnn", "train", "-o", "new.npz", "--save-test", "img"],
     "--save-test img is an EIE image"),
    ("bnn-train-save-test-bnn-image", ["bnn", "train", "-o", "new.npz", "--save-test", "bimg"],
     "--save-test bimg is a BNN image"),
    ("bnn-train-save-test-demo", ["bnn", "train", "-o", "new.npz", "--save-test", "fakedemo"],
     "--save-test fakedemo is an `eie demo` output"),
    ("bnn-train-save-test-deep", ["bnn", "train", "-o", "new.npz", "--save-test", "nope/a/b"],
     "its parent directory nope/a does not exist"),
    ("bnn-train-save-test-file", ["bnn", "train", "-o", "new.npz", "--save-test", "file.txt"],
     "exists and is not a directory"),
    # --- eie verify: a configuration named twice
    ("verify-only-duplicate", ["verify", "--only", "2,2"], "names configuration 2 twice"),
    # --- argparse's own errors: the same one line as every other error, naming the usage
    ("demo-unknown-option", ["demo", "--bogus"],
     "unrecognized arguments: --bogus (usage: eie demo --help)"),
    ("demo-images-not-int", ["demo", "--images", "x"],
     "argument --images: 'x' is not an integer (usage: eie demo --help)"),
    ("bench-sweep-no-kind", ["bench", "sweep"],
     "required: kind (usage: eie bench sweep --help)"),
    ("bnn-train-no-o", ["bnn", "train"], "required: -o/--output (usage: eie bnn train --help)"),
    ("bnn-train-unknown", ["bnn", "train", "-o", "new.npz", "--zz", "1"],
     "unrecognized arguments: --zz 1 (usage: eie bnn train --help)"),
    ("bench-table3-bad-sim", ["bench", "table3", "--sim", "foo"],
     "invalid choice: 'foo'"),
]


@pytest.mark.parametrize("argv, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_one_line_exit_2_nothing_touched(world, cli, monkeypatch, argv, message):
    monkeypatch.chdir(world)
    before = tree(world)
    r = cli([a.replace("{d}", str(world)) for a in argv])
    lines = r.err.strip().splitlines()
    assert r.code == 2, (r.code, r.err[-2000:])
    assert "Traceback" not in r.err
    assert len(lines) == 1 and lines[0].startswith("eie: error: "), r.err[-2000:]
    assert message in lines[0], lines[0]
    assert tree(world) == before


def test_every_subcommand_has_cases():
    from eie.app.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    commands = set()
    for name, p in sub.choices.items():
        nested = [a for a in p._actions if getattr(a, "choices", None) and a.dest.endswith(
            "_command")]
        commands |= {f"{name} {n}" for n in nested[0].choices} if nested else {name}
    covered = {" ".join(c[1][:2]) if " ".join(c[1][:2]) in commands else c[1][0] for c in CASES}
    assert commands <= covered, f"no hostile cases for {sorted(commands - covered)}"


@pytest.mark.skipif(IS_ROOT, reason="root writes into a 0555 directory")
def test_read_only_directory(tmp_path, cli):
    np.save(tmp_path / "x.npy", np.zeros((1, 4), np.uint8))
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        r = cli(["golden", tmp_path, "--input", tmp_path / "x.npy", "-o", ro / "y.npy"])
        assert r.code == 2 and "not writable" in r.err and len(r.err.splitlines()) == 1
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


# ----------------------------------------------------------------------------- what stays allowed

def test_own_outputs_are_replaced(tmp_path, cli):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "m.npz", W0=rng.standard_normal((5, 7)).astype(np.float32))
    from eie.sw.bnn.float_model import random_model, save_model

    save_model(random_model([12, 8, 4], rng), tmp_path / "b.npz")
    (tmp_path / "empty").mkdir()
    for _ in range(2):      # a new directory, then the same one again (its own output)
        assert cli(["compress", tmp_path / "m.npz", "-o", tmp_path / "img", "--pes", "2"]).code == 0
        assert cli(["bnn", "compile", tmp_path / "b.npz", "-o", tmp_path / "bimg"]).code == 0
    assert cli(["compress", tmp_path / "m.npz", "-o", tmp_path / "img", "--pes", "3"]).code == 0
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == sorted(
        ["manifest.json", "image.npz"] + [f"pe{k}_{s}.hex" for k in range(3)
                                          for s in ("ptr", "spmat")])
    assert cli(["compress", tmp_path / "m.npz", "-o", tmp_path / "empty", "--pes", "2"]).code == 0
    np.save(tmp_path / "x.npy", np.zeros((1, 7), np.float32))
    for _ in range(2):      # a file is replaced
        r = cli(["golden", tmp_path / "img", "--input", tmp_path / "x.npy", "-o",
                 tmp_path / "y.npy"])
        assert r.code == 0, r.err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_new_file_beside_an_input_directory_is_allowed(tmp_path, cli):
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "m.npz", W0=rng.standard_normal((5, 7)).astype(np.float32))
    assert cli(["compress", tmp_path / "m.npz", "-o", tmp_path / "img", "--pes", "2"]).code == 0
    np.save(tmp_path / "x.npy", np.zeros((1, 7), np.float32))
    r = cli(["golden", tmp_path / "img", "--input", tmp_path / "x.npy", "-o",
             tmp_path / "img" / "y.npy"])
    assert r.code == 0, r.err


def test_saturating_weights_compress_with_a_warning(tmp_path, cli):
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "big.npz", W0=1e30 * rng.standard_normal((11, 14)),
             W1=rng.standard_normal((6, 11)).astype(np.float32))
    r = cli(["compress", tmp_path / "big.npz", "-o", tmp_path / "img", "--pes", "2"])
    assert r.code == 0, r.err
    warn = [line for line in r.err.splitlines() if line.startswith("warning: ")]
    assert len(warn) == 1, r.err
    assert re.search(r"layer 0: (\d+) of \1 codebook entries saturated", warn[0]), warn[0]
    assert "Traceback" not in r.err


def test_rounding_some_entries_to_zero_warns(tmp_path, cli):
    # one outlier sets the weight shift; the small centroids fall below its last bit
    w = np.full((11, 14), 1e-7)
    w[0, 0] = 3.0
    w[1, ::2] = -1e-7
    np.savez(tmp_path / "m.npz", W0=w)
    r = cli(["compress", tmp_path / "m.npz", "-o", tmp_path / "img", "--pes", "2",
             "--centroids", "3"])
    assert r.code == 0, r.err
    warn = [line for line in r.err.splitlines() if line.startswith("warning: ")]
    assert len(warn) == 1, r.err
    # such weights are not dropped: they stay stored, as entries whose codebook value is 0
    from eie.sw.image import read_image

    img = read_image(tmp_path / "img")
    book = np.asarray(img.layers[0].codebook)
    codes = np.concatenate([img.layer_entries(0, k) & 0xF for k in range(img.n_pe)])
    stored = int(np.count_nonzero((codes != 0) & (book[codes] == 0)))
    assert stored == int(np.count_nonzero(np.abs(w) == 1e-7))        # every tiny weight
    assert "dropped" not in warn[0]
    # first what is lost (the weights' contributions: the outputs change), then why (the one
    # large weight sets the step, far above the typical one) and what to do about it; the
    # storage they still take comes last
    assert warn[0].startswith(f"warning: layer 0: {stored} of its {w.size} kept weights "
                              f"({stored / w.size:.2%}) round to 0 in int16 fixed point, so "
                              "their contributions are lost and the layer's outputs change: "
                              "2 of 3 codebook entries (|w| up to 1e-07) are below half the "
                              "step 0.000122 of w_frac 13"), warn[0]
    assert ("the largest |w|, 3, must fit int16, and it is 3e+07x the median kept |w| (1e-07): "
            "check it (an outlier? clip it, or fix the model)") in warn[0]
    assert warn[0].index("outlier") < warn[0].index("still stored, as entries that add nothing")
    assert warn[0].endswith("(pruning them, with a higher --prune-std or a lower --density, "
                            "saves that storage)")


# ----------------------------------------------------------------------------- interrupts, in process

def _interrupt_when(monkeypatch, module, name, how):
    real = getattr(module, name)

    def wrapper(*a, **k):
        if how == "raise":
            raise KeyboardInterrupt
        import signal

        signal.raise_signal(signal.SIGTERM)
        return real(*a, **k)

    monkeypatch.setattr(module, name, wrapper)


def test_ctrl_c_while_writing_keeps_the_old_image_and_says_so(tmp_path, cli, monkeypatch):
    rng = np.random.default_rng(4)
    np.savez(tmp_path / "m.npz", W0=rng.standard_normal((5, 7)).astype(np.float32))
    assert cli(["compress", tmp_path / "m.npz", "-o", tmp_path / "img", "--pes", "2"]).code == 0
    before = tree(tmp_path)
    import eie.sw.image as image_module

    _interrupt_when(monkeypatch, image_module.np, "savez_compressed", "raise")
    r = cli(["compress", tmp_path / "m.npz", "-o", tmp_path / "img", "--pes", "3"])
    assert r.code == 130
    assert r.err.strip().splitlines() == [f"eie: interrupted; {tmp_path / 'img'}: old output kept"]
    assert tree(tmp_path) == before


def test_sigterm_in_the_rename_window_reports_the_new_image(tmp_path, cli, monkeypatch):
    rng = np.random.default_rng(5)
    np.savez(tmp_path / "m.npz", W0=rng.standard_normal((5, 7)).astype(np.float32))
    assert cli(["compress", tmp_path / "m.npz", "-o", tmp_path / "img", "--pes", "2"]).code == 0
    import eie.common.atomic as atomic_module

    _interrupt_when(monkeypatch, atomic_module.os, "replace", "signal")
    r = cli(["compress", tmp_path / "m.npz", "-o", tmp_path / "img", "--pes", "3"])
    monkeypatch.undo()
    assert r.code == 143
    assert r.err.strip().splitlines() == [
        f"eie: terminated; {tmp_path / 'img'}: new output complete"]
    assert json.loads((tmp_path / "img" / "manifest.json").read_text())["n_pe"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img", "m.npz"]


def test_help_is_still_argparses(cli):
    """Only the errors changed (one line, as above, also without a command): --help prints the
    usage and the options, exit 0."""
    cli([]).assert_clean_error(
        "the following arguments are required: COMMAND (usage: eie --help)")
    r = cli(["demo", "--help"])
    assert r.code == 0 and r.out.startswith("usage: eie demo") and "--bnn-fold" in r.out
    r = cli(["bench", "sweep", "--help"])
    assert r.code == 0 and r.out.startswith("usage: eie bench sweep")
